"""Dask on ember (Ray's ``ray.util.dask``): run Dask graphs' tasks as ember tasks.

    from ember.util.dask import ember_dask_get, enable_dask_on_ember
    df.groupby("k").x.sum().compute(scheduler=ember_dask_get)
    enable_dask_on_ember()          # every later .compute() uses ember

``ray_dask_get``, ``enable_dask_on_ray`` and ``disable_dask_on_ray`` are the same functions
under Ray's names.  See ``ember/util/dask/scheduler.py``.
"""
from ember.util.dask.scheduler import (disable_dask_on_ember, disable_dask_on_ray, ember_dask_get,
                                       enable_dask_on_ember, enable_dask_on_ray, ray_dask_get)

__all__ = ["disable_dask_on_ember", "disable_dask_on_ray", "ember_dask_get", "enable_dask_on_ember",
           "enable_dask_on_ray", "ray_dask_get"]
