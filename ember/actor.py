"""Actors: ``@ember.remote`` on a class, handles, methods, ``@ember.method``, ``exit_actor``.

``Counter.remote(*args)`` registers the actor with the control store and returns an
:class:`ActorHandle` at once; ``handle.method.remote(*args)`` sends the call straight to
the actor's worker (see ``ember/shells/worker/actor_submitter.py``).  Handles are plain values:
picklable (passed to tasks and other actors, stored in objects), comparable, printable.
"""
from __future__ import annotations

import asyncio
import hashlib
import inspect
from typing import Any, Callable, Optional

from ember import exceptions as exc
from ember import options as opt
from ember.ids import ActorID
from ember.util.scheduling_strategies import (
    captured_strategy, may_capture, resolve as resolve_strategy, to_wire, with_placement,
)
from ember import lifecycle, runtime_env
from ember.logic.owner import generators

__all__ = ["ActorClass", "ActorHandle", "ActorMethod", "ActorID", "method", "exit_actor"]

# Methods every actor has (Ray's names).
_BUILTIN_METHODS = ("__ray_ready__", "__ray_terminate__")
# How a method's max_task_retries says "use the actor's" on the wire.
_INHERIT = -2
_METHOD_OPTIONS_ATTR = "__ember_method_options__"


def method(*args: Any, **kwargs: Any) -> Callable[[Any], Any]:
    """``@ember.method(num_returns=2)`` on an actor method: per-method options."""
    if len(args) == 1 and not kwargs and callable(args[0]):
        setattr(args[0], _METHOD_OPTIONS_ATTR, {})
        return args[0]
    if args:
        raise ValueError("The @ember.method decorator must be applied using keyword arguments, for "
                         "example '@ember.method(num_returns=2)'.")
    opt.validate_method_options(kwargs, in_options=False)

    def annotate(fn: Any) -> Any:
        setattr(fn, _METHOD_OPTIONS_ATTR, dict(kwargs))
        return fn

    return annotate


def _concurrency_groups(groups: Any, methods: dict[str, list], class_name: str) -> dict[str, int]:
    """The actor's groups as {name: max concurrency}, checked against the methods that name one."""
    if not groups:
        out: dict[str, int] = {}
    elif isinstance(groups, dict):
        out = {str(g): int(n) for g, n in groups.items()}
    else:   # a list of names: each runs one call at a time
        out = {str(g): 1 for g in groups}
    for group, limit in out.items():
        if limit < 1:
            raise ValueError(f"max concurrency of concurrency group '{group}' must be at least 1, got {limit}")
    for name, entry in methods.items():
        if entry[2] and entry[2] not in out:
            raise ValueError(f"The method {class_name}.{name} is in concurrency group '{entry[2]}', which is not "
                             f"defined in the actor's concurrency_groups {sorted(out)}.")
    return out


def _is_method(member: Any) -> bool:
    return inspect.isfunction(member) or inspect.ismethod(member) or isinstance(member, (staticmethod, classmethod))


def _method_table(cls: type) -> tuple[dict[str, list], bool]:
    """{name: [num_returns, max_task_retries or _INHERIT]} and whether the actor is async."""
    methods: dict[str, list] = {}
    is_async = False
    for name in dir(cls):
        if name.startswith("__") and name != "__call__":
            continue
        try:
            raw = inspect.getattr_static(cls, name)
        except AttributeError:
            continue
        if not _is_method(raw):
            continue
        fn = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
        if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
            is_async = True
        options = getattr(fn, _METHOD_OPTIONS_ATTR, {})
        retries = options.get("max_task_retries")
        default_returns = "streaming" if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn) else 1
        methods[name] = [options.get("num_returns", default_returns), _INHERIT if retries is None else retries,
                         options.get("concurrency_group")]
    for name in _BUILTIN_METHODS:
        methods[name] = [1, _INHERIT, None]
    return methods, is_async


class ActorClass:
    """What ``@ember.remote`` makes of a class: ``.remote()``, ``.options()``."""

    def __init__(self, cls: type, actor_options: dict[str, Any]) -> None:
        opt.validate_actor_options(actor_options, in_options=False)
        self._cls = cls
        self._default_options = actor_options
        self._blob: Optional[bytes] = None
        self._class_id = b""
        self._methods, self._is_async = _method_table(cls)
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__module__ = cls.__module__
        self.__doc__ = cls.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"Actors cannot be instantiated directly. Instead of '{self.__name__}()', "
                        f"use '{self.__name__}.remote()'.")

    def __repr__(self) -> str:
        return f"ActorClass({self.__name__})"

    def __reduce__(self) -> Any:
        return (ActorClass, (self._cls, self._default_options))

    def remote(self, *args: Any, **kwargs: Any) -> "ActorHandle":
        return self._remote(args, kwargs, self._default_options)

    def options(self, **actor_options: Any) -> "_ActorClassWithOptions":
        opt.validate_actor_options(actor_options, in_options=True)
        return _ActorClassWithOptions(self, opt.merge_options(self._default_options, actor_options))

    def _export(self) -> tuple[bytes, bytes]:
        if self._blob is None:
            from ember.shells.shared import serialization
            self._blob = serialization.serialize(self._cls, what=f"the actor class {self.__name__}").to_bytes()
            self._class_id = hashlib.blake2b(self._blob, digest_size=16).digest()
        return self._class_id, self._blob

    def _remote(self, args: tuple, kwargs: dict, actor_options: dict[str, Any]) -> "ActorHandle":
        cw = lifecycle.core_worker_or_init()
        o = opt.with_defaults(actor_options, opt.ACTOR)
        groups = _concurrency_groups(o.get("concurrency_groups"), self._methods, self.__name__)
        _, blob = self._export()
        placement, running = opt.resolve_actor_resources(o)
        strategy = resolve_strategy(o)
        if strategy is None and cw.mode == "worker" and may_capture(actor_options):
            strategy = captured_strategy(cw)
        needs_hidden_cpu = placement != running  # the default actor: 1 CPU to be created, 0 to run
        running = with_placement(strategy, running, self.__name__)
        placement = with_placement(strategy, placement, self.__name__, is_actor_placement=needs_hidden_cpu)
        max_concurrency = o["max_concurrency"] or (1000 if self._is_async else 1)
        meta = {"class_name": self.__name__, "methods": self._methods, "is_async": self._is_async,
                "max_task_retries": int(o["max_task_retries"]), "max_pending_calls": int(o["max_pending_calls"]),
                "concurrency_groups": groups}
        env = runtime_env.for_submission(o.get("runtime_env"), cw)
        if env:
            meta["runtime_env"] = env
        actor_id, meta = cw.actor_submitter.create_actor(
            class_name=self.__name__, class_blob=blob, args=args, kwargs=kwargs, handle_meta=meta,
            name=o.get("name") or "", namespace=o.get("namespace"), is_detached=o.get("lifetime") == "detached",
            get_if_exists=bool(o.get("get_if_exists")), placement_resources=placement,
            running_resources=running, strategy=to_wire(strategy),
            max_restarts=int(o["max_restarts"]), max_concurrency=int(max_concurrency))
        return ActorHandle(actor_id, meta, is_counted=True)


class _ActorClassWithOptions:
    def __init__(self, actor_class: ActorClass, actor_options: dict[str, Any]) -> None:
        self._actor_class = actor_class
        self._options = actor_options

    def remote(self, *args: Any, **kwargs: Any) -> "ActorHandle":
        return self._actor_class._remote(args, kwargs, self._options)

    def options(self, **more: Any) -> "_ActorClassWithOptions":
        opt.validate_actor_options(more, in_options=True)
        return _ActorClassWithOptions(self._actor_class, opt.merge_options(self._options, more))


def _submitter() -> Any:
    from ember.shells.worker import core_worker
    cw = core_worker._core_worker
    return None if cw is None else cw.actor_submitter


class ActorHandle:
    """A reference to an actor.  ``handle.method.remote(...)`` calls it."""

    def __init__(self, actor_id: bytes, meta: dict, *, is_counted: bool = False) -> None:
        self._ember_actor_id = actor_id
        self._ember_meta = meta
        sub = _submitter()
        self._ember_submitter = sub
        if sub is not None and not is_counted:
            sub.handle_created(actor_id)

    @property
    def _actor_id(self) -> ActorID:
        return ActorID(self._ember_actor_id)

    @property
    def _ray_actor_id(self) -> ActorID:
        return self._actor_id

    def __getattr__(self, name: str) -> "ActorMethod":
        if name.startswith("_ember"):
            raise AttributeError(name)
        entry = self._ember_meta.get("methods", {}).get(name)
        if entry is None:
            raise AttributeError(f"'ActorHandle' object has no attribute '{name}'")
        return ActorMethod(self, name, entry, {})

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, ActorHandle) and other._ember_actor_id == self._ember_actor_id

    def __hash__(self) -> int:
        return hash(self._ember_actor_id)

    def __repr__(self) -> str:
        return f"Actor({self._ember_meta.get('class_name', '?')}, {self._ember_actor_id.hex()})"

    def __reduce__(self) -> Any:
        sub = self._ember_submitter
        if sub is not None:
            sub.handle_escaped(self._ember_actor_id)
        return (_rebuild_handle, (self._ember_actor_id, self._ember_meta))

    def __del__(self) -> None:
        sub = self.__dict__.get("_ember_submitter")
        if sub is not None:
            try:
                sub.handle_dropped(self._ember_actor_id)
            except Exception:
                pass


def _rebuild_handle(actor_id: bytes, meta: dict) -> ActorHandle:
    return ActorHandle(actor_id, meta)


class ActorMethod:
    """``handle.method``: ``.remote(...)``, ``.options(num_returns=..., name=...)``."""

    def __init__(self, handle: ActorHandle, name: str, entry: list, method_options: dict[str, Any]) -> None:
        self._handle = handle
        self._name = name
        self._entry = entry
        self._options = method_options

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"Actor methods cannot be called directly. Instead of running 'object.{self._name}()', "
                        f"try 'object.{self._name}.remote()'.")

    def options(self, **method_options: Any) -> "ActorMethod":
        opt.validate_method_options(method_options, in_options=True)
        return ActorMethod(self._handle, self._name, self._entry, opt.merge_options(self._options, method_options))

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        handle = self._handle
        sub = handle._ember_submitter
        if sub is None or sub.cw.is_shutdown:
            raise exc.RaySystemError("this actor handle belongs to an ember session that was shut down")
        num_returns = self._options.get("num_returns", self._entry[0])
        num_returns = generators.num_returns_on_wire(1 if num_returns is None else num_returns,
                                                     self._options.get("_generator_backpressure_num_objects"))
        retries = self._options.get("max_task_retries")
        if retries is None:
            retries = self._entry[1] if self._entry[1] != _INHERIT else handle._ember_meta.get("max_task_retries", 0)
        class_name = handle._ember_meta.get("class_name", "Actor")
        group = self._options.get("concurrency_group") or (self._entry[2] if len(self._entry) > 2 else None) or ""
        if group and group not in (handle._ember_meta.get("concurrency_groups") or {}):
            raise ValueError(f"The concurrency group '{group}' of {class_name}.{self._name} is not defined on the "
                             f"actor; its groups are {sorted(handle._ember_meta.get('concurrency_groups') or {})}.")
        refs = sub.submit_call(handle._ember_actor_id, handle._ember_meta, method_name=self._name,
                               task_name=self._options.get("name") or f"{class_name}.{self._name}",
                               args=args, kwargs=kwargs, num_returns=num_returns, max_task_retries=int(retries),
                               concurrency_group=group)
        if num_returns == 1 or num_returns < 0:   # one ref, or a generator method's ObjectRefGenerator
            return refs[0]
        if num_returns == 0:
            return None
        return refs


def exit_actor() -> None:
    """End the current actor from inside one of its methods (no restart).  The call that
    invoked it fails with ActorDiedError, as do calls queued behind it."""
    from ember.shells.worker import core_worker
    cw = core_worker._core_worker
    if cw is None or not getattr(cw, "actor_id", None):
        raise TypeError("exit_actor API is called on a non-actor worker, "
                        f"{'driver' if cw is None or cw.mode == 'driver' else 'task worker'}. "
                        "Call this API inside an actor methods if you'd like to exit the actor gracefully.")
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise SystemExit(0) from None  # sync actor: caught by the actor executor
    raise exc.AsyncioActorExit()
