"""ember.autoscaler: the public side of the autoscaler (ray.autoscaler's)."""
