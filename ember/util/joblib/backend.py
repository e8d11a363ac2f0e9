"""The joblib backend: each batch joblib dispatches is one ember task.

joblib cuts the calls into batches and grows them until one takes about 0.2 s
(``AutoBatchingMixin``), so 10,000 tiny calls make a few dozen tasks.  A batch task takes
``num_cpus=1`` (change it with ``parallel_backend("ember", ray_remote_args={...})``) and may
run on any node; its result comes back through ``ObjectRef.future()``, whose done-callback
tells joblib.  Errors are re-raised in the caller as joblib's process backends raise them:
the original exception with the remote traceback attached.  Nothing is kept between
``Parallel`` calls, so no CPU stays held after one ends.
"""
from __future__ import annotations

import concurrent.futures
import threading
from typing import Any, Callable, Optional

from joblib._parallel_backends import AutoBatchingMixin, FallbackToBackend, ParallelBackendBase, SequentialBackend

try:  # joblib >= 1.4: the wrapper its process pools use to carry tracebacks back
    from joblib._parallel_backends import _retrieve_traceback_capturing_wrapped_call as _unwrap
    from joblib._utils import _TracebackCapturingWrapper as _Wrap
except ImportError:  # pragma: no cover - older joblib: exceptions arrive as ember's RayTaskError
    _Wrap = None
    _unwrap = None


def _run_batch(func: Callable[[], Any]) -> Any:
    return func()


class EmberBackend(AutoBatchingMixin, ParallelBackendBase):
    """joblib's ``ParallelBackendBase`` on ember tasks."""

    supports_retrieve_callback = True
    supports_return_generator = True
    supports_timeout = True
    supports_sharedmem = False
    uses_threads = False
    default_n_jobs = -1

    def __init__(self, nesting_level: Optional[int] = None, inner_max_num_threads: Optional[int] = None,
                 ray_remote_args: Optional[dict] = None, **kwargs: Any) -> None:
        super().__init__(nesting_level=nesting_level, inner_max_num_threads=inner_max_num_threads, **kwargs)
        self._remote_args = dict(ray_remote_args or {})
        self._task: Any = None
        self._lock = threading.Lock()
        self._in_flight: dict[concurrent.futures.Future, Any] = {}
        self.parallel: Any = None

    def _cluster_cpus(self) -> int:
        from ember import api
        if not api.is_initialized():
            api.init()
        return max(int(api.cluster_resources().get("CPU", 1)), 1)

    def effective_n_jobs(self, n_jobs: Optional[int]) -> int:
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            return 1
        cpus = self._cluster_cpus()
        if n_jobs < 0:
            return max(cpus + 1 + n_jobs, 1)
        return min(n_jobs, cpus) if self._remote_args.get("num_cpus", 1) else n_jobs

    def configure(self, n_jobs: int = 1, parallel: Any = None, prefer: Any = None, require: Any = None,
                  ray_remote_args: Optional[dict] = None, **kwargs: Any) -> int:
        from ember import api
        if ray_remote_args is not None:
            self._remote_args = dict(ray_remote_args)
        n_jobs = self.effective_n_jobs(n_jobs)
        if n_jobs == 1:
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        self.parallel = parallel
        self._task = api.remote(_run_batch).options(**{"num_cpus": 1, **self._remote_args})
        return n_jobs

    def submit(self, func: Callable[[], Any], callback: Optional[Callable[[Any], Any]] = None) -> Any:
        ref = self._task.remote(_Wrap(func) if _Wrap is not None else func)
        fut = ref.future()
        with self._lock:
            self._in_flight[fut] = ref
        fut.add_done_callback(self._forget)
        if callback is not None:
            fut.add_done_callback(callback)
        return fut

    def _forget(self, fut: concurrent.futures.Future) -> None:
        with self._lock:
            self._in_flight.pop(fut, None)

    def retrieve_result_callback(self, out: concurrent.futures.Future) -> Any:
        result = out.result()
        return _unwrap(result) if _unwrap is not None else result

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """Cancel the batches still queued or running (an error ended the ``Parallel`` call)."""
        from ember import api
        with self._lock:
            refs = list(self._in_flight.values())
            self._in_flight.clear()
        for ref in refs:
            try:
                api.cancel(ref)
            except Exception:
                pass
        if ensure_ready and self.parallel is not None:
            self.configure(n_jobs=self.parallel.n_jobs, parallel=self.parallel)

    def terminate(self) -> None:
        self.reset_batch_stats()
