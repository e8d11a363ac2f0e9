"""ember's error tree, under Ray's names (``ray.exceptions.RayTaskError`` etc.).

Every class derives from :class:`EmberError` (alias ``RayError``).  All of them cross
process boundaries, so pickling is designed in, not hoped for: ``EmberError.__reduce__``
rebuilds an instance without calling ``__init__`` (constructors take different
arguments) and restores ``args`` and the instance ``__dict__``.

A failed task travels as a :class:`RayTaskError` holding the user's exception as
``cause`` and the remote traceback as text.  ``as_instanceof_cause()`` turns it into an
instance of a dynamic class ``RayTaskError(UserClass)`` that inherits from both, so
``except ValueError`` and ``except ray.exceptions.RayTaskError`` both catch it.  The
dynamic class is made once per user class and pickles by rebuilding itself from the
plain ``RayTaskError`` on the receiving side.

Tree (``*`` = also derives from the named builtin)::

    EmberError (RayError)
    ├── RayTaskError (TaskError)            → RayTaskError(UserClass) at get() time
    ├── RayActorError (ActorError)
    │   ├── ActorDiedError
    │   └── ActorUnavailableError
    ├── ActorUnschedulableError, TaskUnschedulableError
    ├── GetTimeoutError *TimeoutError
    ├── WorkerCrashedError, LocalRayletDiedError, NodeDiedError, TaskCancelledError
    ├── ObjectLostError
    │   ├── OwnerDiedError, ObjectFetchTimedOutError, ObjectFreedError
    │   ├── ReferenceCountingAssertionError *AssertionError
    │   └── ObjectReconstructionFailedError
    │       ├── ObjectReconstructionFailedMaxAttemptsExceededError
    │       └── ObjectReconstructionFailedLineageEvictedError
    ├── ObjectStoreFullError, OutOfDiskError, OutOfMemoryError
    ├── RaySystemError
    │   └── RayChannelError ── RayChannelTimeoutError *TimeoutError, RayCgraphCapacityExceeded
    ├── RuntimeEnvSetupError, PendingCallsLimitExceeded, AsyncioActorExit
    ├── TaskPlacementGroupRemoved, ActorPlacementGroupRemoved
    ├── CrossLanguageError, UnserializableException, AuthenticationError, RpcError
    └── PlasmaObjectNotAvailable, ObjectRefStreamEndOfStreamError, UserCodeException
"""
from __future__ import annotations

import logging
import os
import threading
import traceback
from typing import Any, Callable, Optional, Union

logger = logging.getLogger(__name__)

# Source files under this directory are ember's own frames; they are hidden from the
# remote tracebacks users see (as Ray hides its internal files).
_EMBER_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_DEFAULT_NODE_IP = "127.0.0.1"
# The worker process sets this so errors name the node they happened on.
NODE_IP_ENV_VAR = "EMBER_NODE_IP_ADDRESS"


def _restore(cls: type, args: tuple[Any, ...], state: dict[str, Any]) -> BaseException:
    exc: BaseException = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class EmberError(Exception):
    """Base class of every ember error (Ray: ``RayError``)."""

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return (_restore, (type(self), self.args, dict(self.__dict__)))

    def to_bytes(self) -> bytes:
        """Serialize this error (cloudpickle), as Ray's ``RayError.to_bytes``."""
        import cloudpickle

        return bytes(cloudpickle.dumps(self))

    @staticmethod
    def from_bytes(data: bytes) -> "EmberError":
        """Inverse of ``to_bytes``; an error that cannot be unpickled becomes an
        :class:`UnserializableException` carrying what could be recovered."""
        import pickle

        try:
            exc = pickle.loads(data)
        except Exception as e:  # the class may be missing on this side
            return UnserializableException(f"Failed to unpickle serialized exception: {e!r}")
        if not isinstance(exc, EmberError):
            return UnserializableException(f"Not an ember error: {exc!r}")
        return exc


RayError = EmberError


# --------------------------------------------------------------------------- tasks
def _format_remote_traceback(error: "RayTaskError") -> str:
    header = f"{error.proctitle}() (pid={error.pid}, ip={error.ip}"
    if error.actor_repr:
        header += f", actor_id={error.actor_id}, repr={error.actor_repr})"
    else:
        header += ")"
    lines = error.traceback_str.strip().split("\n")
    out: list[str] = []
    skipping_code = False
    has_header = False
    for i, line in enumerate(lines):
        if line.startswith("Traceback "):
            out.append(header)
            has_header = True
            skipping_code = False
        elif line.startswith("  File ") and _EMBER_PACKAGE_DIR in line:
            # An internal frame: drop it and its code lines (source, and 3.11's ^^^ markers).
            skipping_code = True
        elif skipping_code and line.startswith("    "):
            continue
        else:
            skipping_code = False
            out.append(line)
    if not has_header:
        out.insert(0, header)
    return "\n".join(out)


def _node_ip() -> str:
    return os.environ.get(NODE_IP_ENV_VAR) or _DEFAULT_NODE_IP


class _RawCause:
    """Pickles an exception without calling its ``__init__`` (for user classes whose
    constructor does not accept their own ``args``, which plain pickle cannot rebuild)."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        exc = self.exc
        return (_restore, (type(exc), exc.args, dict(getattr(exc, "__dict__", {}))))


def _checked_cause(cause: BaseException) -> tuple[BaseException, bool]:
    """(cause, needs_raw_pickling).  A cause that cannot cross processes at all is
    replaced by an EmberError that says why (as Ray does)."""
    import cloudpickle

    try:
        cloudpickle.loads(cloudpickle.dumps(cause))
        return cause, False
    except Exception as e:
        first_error = e
    try:
        cloudpickle.loads(cloudpickle.dumps(_RawCause(cause)))
        return cause, True
    except Exception:
        pass
    msg = (
        f"The original cause of the RayTaskError ({type(cause)}) isn't "
        f"serializable: {first_error!r}. Overwriting the cause to a RayError."
    )
    logger.warning(msg)
    return EmberError(msg), False


class RayTaskError(EmberError):
    """A task (or actor method) raised; stored as the value of each of its returns.

    ``RayTaskError(function_name, traceback_str, cause, proctitle=None, pid=None,
    ip=None, actor_repr=None, actor_id=None)`` — Ray's argument order.  ``proctitle``
    defaults to ``"ray::<function_name>"``; ``pid`` to this process; ``ip`` to the
    node's address (``$EMBER_NODE_IP_ADDRESS`` or 127.0.0.1).
    """

    def __init__(
        self,
        function_name: str,
        traceback_str: str,
        cause: BaseException,
        proctitle: Optional[str] = None,
        pid: Optional[int] = None,
        ip: Optional[str] = None,
        actor_repr: Optional[str] = None,
        actor_id: Optional[str] = None,
    ) -> None:
        if traceback_str is None:
            raise TypeError("RayTaskError needs the remote traceback text")
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause, self._cause_is_raw = _checked_cause(cause)
        self.proctitle = proctitle or f"ray::{function_name}"
        self.pid = pid or os.getpid()
        self.ip = ip or _node_ip()
        self.actor_repr = actor_repr
        self.actor_id = actor_id
        self.args = (function_name, traceback_str, self.cause, proctitle, pid, ip)

    @classmethod
    def from_exception(
        cls,
        exc: BaseException,
        function_name: str,
        *,
        proctitle: Optional[str] = None,
        pid: Optional[int] = None,
        ip: Optional[str] = None,
        actor_repr: Optional[str] = None,
        actor_id: Optional[str] = None,
    ) -> "RayTaskError":
        """Wrap an exception caught while running user code (the executor's helper)."""
        tb_str = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(function_name, tb_str, exc, proctitle, pid, ip, actor_repr, actor_id)

    def as_instanceof_cause(self) -> "RayTaskError":
        """An error that is an instance of both RayTaskError and the cause's class.

        Falls back to ``self`` when the cause's class cannot be subclassed or an
        instance of the combined class cannot be made.
        """
        user_cls = type(self.cause)
        if issubclass(user_cls, RayTaskError):
            # The task re-raised another task's error: combine with the user class
            # underneath it, if there is one.
            inner = getattr(user_cls, "_ember_user_cls", None)
            if inner is None:
                return self
            user_cls = inner
        if issubclass(RayTaskError, user_cls):
            return self  # Exception, BaseException, EmberError: already an instance
        try:
            dual_cls = _dual_class(user_cls)
            dual = _new_dual(dual_cls, self.cause)
            # Only the cause and the plain error live in the instance: attributes
            # resolve on the cause first (as in Ray), then on the task error.
            dual.__dict__["cause"] = self.cause
            dual.__dict__["_ember_task_error"] = self._plain()
        except Exception as e:
            logger.warning(
                "User exception type %s in RayTaskError can't be subclassed or "
                "instantiated (%r); raising it as RayTaskError only. The user "
                "exception is available as `.cause`.", user_cls, e,
            )
            return self
        return dual

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        state = dict(self.__dict__)
        args = self.args
        if state.get("_cause_is_raw"):
            raw = _RawCause(self.cause)
            state["cause"] = raw
            args = tuple(raw if a is self.cause else a for a in args)
        return (_restore, (type(self), args, state))

    def _plain(self) -> "RayTaskError":
        """The error as a plain RayTaskError (itself, unless it is a dual)."""
        return self

    def __str__(self) -> str:
        return _format_remote_traceback(self)


TaskError = RayTaskError

_dual_classes: dict[type, type] = {}
_dual_classes_lock = threading.Lock()


def _new_dual(dual_cls: type, cause: BaseException) -> RayTaskError:
    # The user's __init__ is not called (it may take other arguments), but a builtin
    # base's is, so that C-level fields (OSError.errno, SystemExit.code) are set.
    dual: RayTaskError = dual_cls.__new__(dual_cls)
    builtin = next(c for c in type(cause).__mro__ if c.__module__ == "builtins")
    if builtin.__init__ is not BaseException.__init__:  # type: ignore[misc]
        try:
            builtin.__init__(dual, *cause.args)  # type: ignore[misc]
        except Exception:
            pass
    dual.args = (cause,)
    return dual


def _rebuild_dual(plain: RayTaskError) -> RayTaskError:
    return plain.as_instanceof_cause()


class _DualMixin:
    """Methods of every dynamic ``RayTaskError(UserClass)``."""

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup failed: the user's exception first, then
        # the task error's own fields (traceback_str, pid, ...).
        if name.startswith("__") or name in ("cause", "_ember_task_error"):
            raise AttributeError(name)
        state = self.__dict__
        if "cause" not in state:
            raise AttributeError(name)
        try:
            return getattr(state["cause"], name)
        except AttributeError:
            pass
        try:
            return state["_ember_task_error"].__dict__[name]
        except KeyError:
            raise AttributeError(name) from None

    def _plain(self) -> RayTaskError:
        plain: RayTaskError = self.__dict__["_ember_task_error"]
        return plain

    def __str__(self) -> str:
        return _format_remote_traceback(self._plain())

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return (_rebuild_dual, (self._plain(),))


def _dual_class(user_cls: type) -> type:
    with _dual_classes_lock:
        cls = _dual_classes.get(user_cls)
        if cls is None:
            name = f"RayTaskError({user_cls.__name__})"
            cls = type(name, (_DualMixin, RayTaskError, user_cls), {
                "__module__": __name__,
                "__qualname__": name,
                "_ember_user_cls": user_cls,
            })
            _dual_classes[user_cls] = cls
        return cls


class TaskCancelledError(EmberError):
    """The task, or one of its dependencies, was cancelled (``ray.cancel``)."""

    def __init__(self, task_id: Optional[str] = None, error_message: Optional[str] = None) -> None:
        self.task_id = task_id
        self.error_message = error_message

    def __str__(self) -> str:
        msg = f"Task: {self.task_id} was cancelled. " if self.task_id else ""
        if self.error_message:
            msg += self.error_message
        return msg or "This task or its dependency was cancelled."


class WorkerCrashedError(EmberError):
    """The worker process died while running the task."""

    def __str__(self) -> str:
        detail = f" {self.args[0]}" if self.args else ""
        return (
            "The worker died unexpectedly while executing this task. "
            "Check the worker's log files for more information." + detail
        )


class LocalRayletDiedError(EmberError):
    """The node daemon of the task's node died."""

    def __str__(self) -> str:
        detail = f" ({self.args[0]})" if self.args else ""
        return f"The task's local node daemon (raylet) died. Check its log for more information.{detail}"


class TaskUnschedulableError(EmberError):
    """No node can ever run the task (e.g. its NodeAffinity target is dead)."""

    def __init__(self, error_message: str) -> None:
        self.error_message = error_message

    def __str__(self) -> str:
        return f"The task is not schedulable: {self.error_message}"


class UserCodeException(EmberError):
    """Wraps an exception from user code; ``retry_exceptions`` looks at its cause."""


class GetTimeoutError(EmberError, TimeoutError):
    """``ray.get``/``ray.wait`` ran out of time."""


class PlasmaObjectNotAvailable(EmberError):
    """An object was not available within the given timeout."""


class ObjectRefStreamEndOfStreamError(EmberError):
    """A streaming generator has no more ObjectRefs to yield."""



# --------------------------------------------------------------------------- actors
class RayActorError(EmberError):
    """The actor failed before finishing this call: it is dead (ActorDiedError) or
    unreachable for now (ActorUnavailableError).  ``actor_id`` is a hex string."""

    BASE_ERROR_MSG = "The actor experienced an error before finishing this task."

    def __init__(
        self,
        actor_id: Optional[str] = None,
        error_msg: str = BASE_ERROR_MSG,
        actor_init_failed: bool = False,
        preempted: bool = False,
        *,
        cause: Optional[BaseException] = None,
    ) -> None:
        self.actor_id = actor_id
        self.error_msg = error_msg
        self._actor_init_failed = actor_init_failed
        self._preempted = preempted
        self.cause = cause

    @property
    def actor_init_failed(self) -> bool:
        """Whether the actor died in its ``__init__``."""
        return self._actor_init_failed

    @property
    def preempted(self) -> bool:
        """Whether the actor died because its node was preempted (drained)."""
        return self._preempted

    def __str__(self) -> str:
        return self.error_msg


ActorError = RayActorError


def _actor_id_hex(actor_id: Union[str, bytes, None]) -> Optional[str]:
    return actor_id.hex() if isinstance(actor_id, bytes) else actor_id


class ActorDiedError(RayActorError):
    """The actor is dead: its process or node died, it was killed, or ``__init__`` raised.

    ``ActorDiedError(cause=None, *, actor_id=None, class_name=None, name=None,
    namespace=None, pid=None, ip=None, error_message=None, never_started=False,
    preempted=False)``.  A :class:`RayTaskError` cause means ``__init__`` raised; its
    remote traceback is part of the message and ``actor_init_failed`` is True.
    """

    BASE_ERROR_MSG = "The actor died unexpectedly before finishing this task."

    def __init__(
        self,
        cause: Optional[BaseException] = None,
        *,
        actor_id: Union[str, bytes, None] = None,
        class_name: Optional[str] = None,
        name: Optional[str] = None,
        namespace: Optional[str] = None,
        pid: Optional[int] = None,
        ip: Optional[str] = None,
        error_message: Optional[str] = None,
        never_started: bool = False,
        preempted: bool = False,
    ) -> None:
        actor_id_hex = _actor_id_hex(actor_id)
        if isinstance(cause, RayTaskError):
            actor_id_hex = actor_id_hex or cause.actor_id
            msg = f"The actor died because of an error raised in its creation task, {cause}"
            super().__init__(actor_id_hex, msg, True, preempted, cause=cause)
            return
        lines = [self.BASE_ERROR_MSG]
        for label, value in (
            ("class_name", class_name), ("actor_id", actor_id_hex), ("pid", pid),
            ("name", name), ("namespace", namespace), ("ip", ip),
        ):
            if value:
                lines.append(f"\t{label}: {value}")
        if error_message:
            lines.append(error_message)
        if cause is not None:
            lines.append(f"Cause: {cause!r}")
        if never_started:
            lines.append("The actor never ran - it was cancelled before it started running.")
        super().__init__(actor_id_hex, "\n".join(lines), False, preempted, cause=cause)

    @staticmethod
    def from_task_error(task_error: RayTaskError) -> "ActorDiedError":
        return ActorDiedError(task_error)


class ActorUnavailableError(RayActorError):
    """The actor cannot be reached right now (e.g. restarting, connection lost); the
    call may or may not have run.  Retrying later may succeed."""

    def __init__(self, error_message: str, actor_id: Union[str, bytes, None]) -> None:
        actor_id_hex = _actor_id_hex(actor_id)
        msg = (
            f"The actor {actor_id_hex} is unavailable: {error_message}. "
            "The task may or may not have been executed on the actor."
        )
        super().__init__(actor_id_hex, msg, False, False)
        self.error_message = error_message


class ActorUnschedulableError(EmberError):
    """No node can ever host the actor (e.g. its NodeAffinity target is dead)."""

    def __init__(self, error_message: str) -> None:
        self.error_message = error_message

    def __str__(self) -> str:
        return f"The actor is not schedulable: {self.error_message}"


class AsyncioActorExit(EmberError):
    """Raised inside an async actor by ``exit_actor()`` to stop it."""


class PendingCallsLimitExceeded(EmberError):
    """More calls are queued to the actor than its ``max_pending_calls`` allows."""


class TaskPlacementGroupRemoved(EmberError):
    """The placement group the task was scheduled in was removed."""

    def __str__(self) -> str:
        return "The placement group corresponding to this task has been removed."


class ActorPlacementGroupRemoved(EmberError):
    """The placement group the actor was scheduled in was removed."""

    def __str__(self) -> str:
        return "The placement group corresponding to this Actor has been removed."


# --------------------------------------------------------------------------- objects
def _format_bytes(size_bytes: Optional[int]) -> str:
    if size_bytes is None:
        return "unknown size"
    value = float(size_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            text = f"{int(value)} {unit}" if unit == "B" else f"{value:.2f} {unit}"
            return text if unit == "B" else f"{text} ({size_bytes} bytes)"
        value /= 1024
    raise AssertionError("unreachable")


class ObjectLostError(EmberError):
    """Every copy of the object is gone (node failure or system error).

    ``ObjectLostError(object_ref_hex, owner_address="", call_site="", *, detail="")``: Ray's
    three arguments (``call_site`` is where the ObjectRef was created, recorded only with
    ``EMBER_RECORD_REF_CREATION_SITES=1``); ``detail`` is ember's own: what the runtime saw
    (the node daemon's or the owner's answer), printed after the reason.
    """

    def __init__(self, object_ref_hex: str, owner_address: str = "", call_site: str = "", *,
                 detail: str = "") -> None:
        self.object_ref_hex = object_ref_hex
        self.owner_address = owner_address
        self.call_site = call_site
        self.detail = detail
        self.args = (object_ref_hex, owner_address, call_site)

    def _base_str(self) -> str:
        msg = f"Failed to retrieve object {self.object_ref_hex}. "
        if self.call_site:
            msg += f"The ObjectRef was created at: {self.call_site}"
        else:
            msg += ("To see information about where this ObjectRef was created in Python, set the "
                    "environment variable EMBER_RECORD_REF_CREATION_SITES=1 (Ray: "
                    "RAY_record_ref_creation_sites=1) during `ember start` and `ember.init()`.")
        return msg

    def _reason(self) -> str:
        return (
            f"All copies of {self.object_ref_hex} have been lost due to node failure. "
            "Check the cluster logs for more information about the failure."
        )

    def __str__(self) -> str:
        text = f"{self._base_str()}\n\n{self._reason()}"
        detail = getattr(self, "detail", "")  # absent on instances pickled by an older ember
        return f"{text}\n\nDetail: {detail}" if detail else text


class ObjectFetchTimedOutError(ObjectLostError):
    """Fetching the object timed out: no location was found for it."""

    def _reason(self) -> str:
        return (
            f"Fetch for object {self.object_ref_hex} timed out because no locations "
            "were found for the object. This may indicate a system-level bug."
        )


class ReferenceCountingAssertionError(ObjectLostError, AssertionError):
    """The object was freed while a reference to it still existed (an ember bug)."""

    def _reason(self) -> str:
        return (
            "The object has already been deleted by the reference counting protocol. "
            "This should not happen."
        )


class ObjectFreedError(ObjectLostError):
    """The application freed the object explicitly before this read."""

    def _reason(self) -> str:
        return (
            "The object was manually freed using the internal `free` call. Please "
            "ensure that `free` is only called once the object is no longer needed."
        )


class OwnerDiedError(ObjectLostError):
    """The process that owned the object (created it with ``.remote()``/``put()``)
    died while a reference to the object was still held."""

    def _reason(self) -> str:
        where = f" at {self.owner_address}" if self.owner_address else ""
        return (
            f"The object's owner{where} has exited. This is the Python worker that "
            "first created the ObjectRef via `.remote()` or `ray.put()`. Check that "
            "worker's log for more information about its failure."
        )


class ObjectReconstructionFailedError(ObjectLostError):
    """The lost object cannot be recomputed from its lineage."""

    def _reason(self) -> str:
        return (
            "The object cannot be reconstructed because it was created by an actor, "
            "a ray.put() call, or its ObjectRef was created by a different worker."
        )


class ObjectReconstructionFailedMaxAttemptsExceededError(ObjectReconstructionFailedError):
    """Recomputing the object would exceed its task's ``max_retries``."""

    def _reason(self) -> str:
        return (
            "The object cannot be reconstructed because the maximum number of task "
            "retries has been exceeded. To prevent this error, set "
            "`@ray.remote(max_retries=<num retries>)` (default 3)."
        )


class ObjectReconstructionFailedLineageEvictedError(ObjectReconstructionFailedError):
    """The lineage needed to recompute the object was evicted to save memory."""

    def _reason(self) -> str:
        return (
            "The object cannot be reconstructed because its lineage has been evicted "
            "to reduce memory pressure."
        )


class ObjectStoreFullError(EmberError):
    """The object store is full of in-scope objects and nothing more can be spilled.

    ``ObjectStoreFullError(message="", *, object_size_bytes=None, capacity_bytes=None,
    used_bytes=None)``; the sizes that are given are named in the message.
    """

    def __init__(
        self,
        message: str = "",
        *,
        object_size_bytes: Optional[int] = None,
        capacity_bytes: Optional[int] = None,
        used_bytes: Optional[int] = None,
    ) -> None:
        self.message = message
        self.object_size_bytes = object_size_bytes
        self.capacity_bytes = capacity_bytes
        self.used_bytes = used_bytes
        self.args = (message,)

    def __str__(self) -> str:
        parts = [self.message] if self.message else []
        if self.object_size_bytes is not None:
            sizes = f"Failed to store an object of {_format_bytes(self.object_size_bytes)}"
            if self.capacity_bytes is not None:
                sizes += f" in an object store of {_format_bytes(self.capacity_bytes)}"
            if self.used_bytes is not None:
                sizes += f" with {_format_bytes(self.used_bytes)} in use"
            parts.append(sizes + ".")
        parts.append(
            "The local object store is full of objects that are still in scope and "
            "cannot be evicted. Tip: Use the `ember memory` command to list active "
            "objects in the cluster."
        )
        return "\n".join(parts)


class OutOfDiskError(EmberError):
    """The object store is full and the local disk is too full to spill to."""

    def __init__(
        self,
        message: str = "",
        *,
        object_size_bytes: Optional[int] = None,
        disk_path: Optional[str] = None,
        disk_usage_fraction: Optional[float] = None,
    ) -> None:
        self.message = message
        self.object_size_bytes = object_size_bytes
        self.disk_path = disk_path
        self.disk_usage_fraction = disk_usage_fraction
        self.args = (message,)

    def __str__(self) -> str:
        parts = [self.message] if self.message else []
        detail = "The object cannot be created because the local object store is full"
        if self.object_size_bytes is not None:
            detail += f" (object of {_format_bytes(self.object_size_bytes)})"
        detail += " and the local disk's utilization is over capacity"
        if self.disk_usage_fraction is not None:
            detail += f" ({self.disk_usage_fraction:.0%} used"
            detail += f" at {self.disk_path})" if self.disk_path else ")"
        parts.append(detail + ".")
        parts.append("Tip: Use `df` to check disk usage and `ember memory` for the object store.")
        return "\n".join(parts)


class OutOfMemoryError(EmberError):
    """The node ran low on memory and killed this task or actor to free some."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.args = (message,)

    def __str__(self) -> str:
        return self.message


class NodeDiedError(EmberError):
    """The node running the work is dead or unreachable."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.args = (message,)

    def __str__(self) -> str:
        return self.message


# --------------------------------------------------------------------------- system
class RaySystemError(EmberError):
    """ember itself failed (e.g. a daemon was killed)."""

    def __init__(self, client_exc: Any, traceback_str: Optional[str] = None) -> None:
        self.client_exc = client_exc
        self.traceback_str = traceback_str
        self.args = (client_exc, traceback_str)

    def __str__(self) -> str:
        msg = f"System error: {self.client_exc}"
        if self.traceback_str:
            msg += f"\ntraceback: {self.traceback_str}"
        return msg


class RayChannelError(RaySystemError):
    """A compiled-graph channel failed (alpha in Ray; kept for name compatibility)."""


class RayChannelTimeoutError(RayChannelError, TimeoutError):
    """A compiled-graph channel operation timed out."""


class RayCgraphCapacityExceeded(RayChannelError):
    """A compiled-graph channel's buffer is at capacity."""


RayAdagCapacityExceeded = RayCgraphCapacityExceeded


class RpcError(EmberError):
    """The RPC layer failed; ``rpc_code`` names the failure when known."""

    def __init__(self, message: str, rpc_code: Optional[int] = None) -> None:
        self.message = message
        self.rpc_code = rpc_code
        self.args = (message, rpc_code)

    def __str__(self) -> str:
        return self.message


class RuntimeEnvSetupError(EmberError):
    """The task's or actor's runtime environment could not be set up."""

    def __init__(self, error_message: Optional[str] = None) -> None:
        self.error_message = error_message
        self.args = (error_message,)

    def __str__(self) -> str:
        lines = ["Failed to set up runtime environment."]
        if self.error_message:
            lines.append(self.error_message)
        return "\n".join(lines)


class CrossLanguageError(EmberError):
    """Raised from another language (ember runs Python only; kept for the name)."""


class UnserializableException(EmberError):
    """A serialized exception could not be deserialized; carries its text instead."""

    def __init__(self, original_stack_trace: str) -> None:
        self.original_stack_trace = original_stack_trace
        self.args = (original_stack_trace,)

    def __str__(self) -> str:
        return (
            "Failed to deserialize exception. The string representation and stack "
            f"trace of the original exception follow:\n{self.original_stack_trace}"
        )


class AuthenticationError(EmberError):
    """A connection presented a missing or wrong cluster token."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.args = (message,)

    def __str__(self) -> str:
        return self.message


RAY_EXCEPTION_TYPES: list[type[EmberError]] = [
    PlasmaObjectNotAvailable, EmberError, RayTaskError, WorkerCrashedError,
    RayActorError, ObjectStoreFullError, ObjectLostError, ObjectFetchTimedOutError,
    ReferenceCountingAssertionError, ObjectReconstructionFailedError,
    ObjectReconstructionFailedMaxAttemptsExceededError,
    ObjectReconstructionFailedLineageEvictedError, OwnerDiedError, GetTimeoutError,
    AsyncioActorExit, RuntimeEnvSetupError, TaskPlacementGroupRemoved,
    ActorPlacementGroupRemoved, PendingCallsLimitExceeded, LocalRayletDiedError,
    TaskUnschedulableError, ActorDiedError, ActorUnschedulableError,
    ActorUnavailableError, RayChannelError, RayChannelTimeoutError,
]

__all__ = [
    "EmberError", "RayError", "RayTaskError", "TaskError", "TaskCancelledError",
    "WorkerCrashedError", "LocalRayletDiedError", "TaskUnschedulableError",
    "UserCodeException", "GetTimeoutError", "PlasmaObjectNotAvailable",
    "ObjectRefStreamEndOfStreamError", "RayActorError", "ActorError", "ActorDiedError",
    "ActorUnavailableError", "ActorUnschedulableError", "AsyncioActorExit",
    "PendingCallsLimitExceeded", "TaskPlacementGroupRemoved", "ActorPlacementGroupRemoved",
    "ObjectLostError", "ObjectFetchTimedOutError", "ReferenceCountingAssertionError",
    "ObjectFreedError", "OwnerDiedError", "ObjectReconstructionFailedError",
    "ObjectReconstructionFailedMaxAttemptsExceededError",
    "ObjectReconstructionFailedLineageEvictedError", "ObjectStoreFullError",
    "OutOfDiskError", "OutOfMemoryError", "NodeDiedError", "RaySystemError",
    "RayChannelError", "RayChannelTimeoutError", "RayCgraphCapacityExceeded",
    "RayAdagCapacityExceeded", "RpcError", "RuntimeEnvSetupError", "CrossLanguageError",
    "UnserializableException", "AuthenticationError", "RAY_EXCEPTION_TYPES",
]
