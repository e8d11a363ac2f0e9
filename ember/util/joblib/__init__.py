"""joblib on ember (Ray's ``ray.util.joblib``).

    from ember.util.joblib import register_ember
    register_ember()
    with joblib.parallel_backend("ember"):
        GridSearchCV(model, grid, n_jobs=-1).fit(X, y)

``register_ray()`` registers the same backend under the name ``"ray"``, so a Ray program runs
unchanged after ``import ember as ray``.  See ``ember/util/joblib/backend.py``.
"""
from __future__ import annotations

__all__ = ["register_ember", "register_ray"]


def register_ember() -> None:
    """Make ``joblib.parallel_backend("ember")`` run joblib's batches as ember tasks."""
    import joblib

    from ember.util.joblib.backend import EmberBackend
    joblib.register_parallel_backend("ember", EmberBackend)


def register_ray() -> None:
    """Register the ember backend under Ray's name too: ``joblib.parallel_backend("ray")``."""
    import joblib

    from ember.util.joblib.backend import EmberBackend
    joblib.register_parallel_backend("ember", EmberBackend)
    joblib.register_parallel_backend("ray", EmberBackend)
