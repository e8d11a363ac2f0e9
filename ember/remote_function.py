"""RemoteFunction: ``@ember.remote`` on a function, ``.options()``, ``.remote()``."""
from __future__ import annotations

import hashlib
import inspect
from typing import Any, Callable, Optional

from ember import options as opt
from ember.util.scheduling_strategies import (
    captured_strategy, may_capture, resolve as resolve_strategy, to_wire, with_placement,
)
from ember import lifecycle, runtime_env
from ember.logic.owner import generators


class RemoteFunction:
    def __init__(self, function: Callable[..., Any], task_options: dict[str, Any]) -> None:
        opt.validate_task_options(task_options, in_options=False)
        self._function = function
        self._name = getattr(function, "__qualname__", getattr(function, "__name__", "function"))
        self._default_options = task_options
        self._blob: Optional[bytes] = None
        self._function_id = b""
        self._plans: dict[int, tuple[dict[str, Any], Any]] = {}
        self.__doc__ = function.__doc__
        self.__name__ = getattr(function, "__name__", self._name)
        self.__wrapped__ = function

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"Remote functions cannot be called directly. Instead of running "
                        f"'{self._name}()', try '{self._name}.remote()'.")

    def options(self, **task_options: Any) -> "_BoundOptions":
        opt.validate_task_options(task_options, in_options=True)
        return _BoundOptions(self, opt.merge_options(self._default_options, task_options))

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self._remote(args, kwargs, self._default_options)

    def _export(self) -> tuple[bytes, bytes]:
        if self._blob is None:
            from ember.shells.shared import serialization
            self._blob = serialization.serialize(self._function, what=f"the remote function {self._name}").to_bytes()
            self._function_id = hashlib.blake2b(self._blob, digest_size=16).digest()
        return self._function_id, self._blob

    def _plan(self, task_options: dict[str, Any], captured: Any = None) -> Any:
        """The resolved options of one options dict (cached: the per-call path only submits);
        ``captured``: the caller's placement group, for a task given no strategy."""
        from ember.shells.worker.task_submitter import TaskPlan
        key = id(task_options) if captured is None else (id(task_options), captured.placement_group.id)
        cached = self._plans.get(key)
        if cached is not None and cached[0] is task_options:
            return cached[1]
        o = opt.with_defaults(task_options, opt.TASK)
        num_returns = o["num_returns"]
        if "num_returns" not in task_options and (inspect.isgeneratorfunction(self._function)
                                                  or inspect.isasyncgenfunction(self._function)):
            num_returns = "streaming"   # Ray's default for generator functions
        num_returns = generators.num_returns_on_wire(1 if num_returns is None else num_returns,
                                                     o.get("_generator_backpressure_num_objects"))
        function_id, blob = self._export()
        max_retries = o["max_retries"]
        retry = o["retry_exceptions"]
        strategy = resolve_strategy(o)
        if captured is not None:
            strategy = captured
        plan = TaskPlan(function_id=function_id, blob=blob, name=o.get("name") or self._name,
                        num_returns=num_returns,
                        resources=with_placement(strategy, opt.resolve_task_resources(o), self._name),
                        max_retries=-1 if max_retries == -1 else int(max_retries),
                        retry_exceptions=list(retry) if isinstance(retry, (list, tuple)) else bool(retry),
                        strategy=to_wire(strategy),
                        runtime_env=runtime_env.for_submission(o.get("runtime_env"), lifecycle.core_worker_or_init()))
        self._plans[key] = (task_options, plan)
        return plan

    def _remote(self, args: tuple, kwargs: dict, task_options: dict[str, Any]) -> Any:
        cw = lifecycle.core_worker_or_init()
        plan = self._plan(task_options)
        if cw.mode == "worker" and plan.strategy[0] == "DEFAULT" and may_capture(task_options):
            captured = captured_strategy(cw)
            if captured is not None:
                plan = self._plan(task_options, captured)
        refs = cw.submit_task(plan, args, kwargs)
        if plan.num_returns == 1 or plan.num_returns < 0:   # one ref, or a generator task's ObjectRefGenerator
            return refs[0]
        return refs

    def __reduce__(self) -> Any:
        return (RemoteFunction, (self._function, self._default_options))


class _BoundOptions:
    def __init__(self, fn: RemoteFunction, task_options: dict[str, Any]) -> None:
        self._fn = fn
        self._options = task_options

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn._remote(args, kwargs, self._options)

    def options(self, **more: Any) -> "_BoundOptions":
        opt.validate_task_options(more, in_options=True)
        return _BoundOptions(self._fn, opt.merge_options(self._options, more))
