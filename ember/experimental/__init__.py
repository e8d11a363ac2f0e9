"""Ray's ``ray.experimental``: ``tqdm_ray`` (progress bars from tasks and actors)."""
