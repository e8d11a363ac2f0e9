"""ember.exceptions: Ray's names, messages, the dual RayTaskError(UserClass), pickling."""
from __future__ import annotations

import pickle
import subprocess
import sys
import threading
from typing import Any

import cloudpickle
import pytest

import ember.exceptions as E

# Ray's public ray.exceptions names (Ray 2.x docs + RAY_EXCEPTION_TYPES).
RAY_NAMES = [
    "RayError", "RayTaskError", "RayActorError", "TaskCancelledError",
    "TaskUnschedulableError", "ActorDiedError", "ActorUnschedulableError",
    "ActorUnavailableError", "AsyncioActorExit", "LocalRayletDiedError",
    "WorkerCrashedError", "TaskPlacementGroupRemoved", "ActorPlacementGroupRemoved",
    "ObjectStoreFullError", "OutOfDiskError", "OutOfMemoryError", "ObjectLostError",
    "ObjectFetchTimedOutError", "GetTimeoutError", "OwnerDiedError",
    "PendingCallsLimitExceeded", "PlasmaObjectNotAvailable",
    "ObjectReconstructionFailedError", "ObjectReconstructionFailedMaxAttemptsExceededError",
    "ObjectReconstructionFailedLineageEvictedError", "RayChannelError",
    "RayChannelTimeoutError", "RayCgraphCapacityExceeded", "RuntimeEnvSetupError",
    "CrossLanguageError", "RaySystemError", "NodeDiedError", "UnserializableException",
    "AuthenticationError", "ReferenceCountingAssertionError", "ObjectFreedError",
    "RpcError", "UserCodeException", "ObjectRefStreamEndOfStreamError",
    "RayAdagCapacityExceeded",
]


def _task_error(exc: BaseException, name: str = "f") -> E.RayTaskError:
    try:
        raise exc
    except BaseException as caught:
        return E.RayTaskError.from_exception(caught, name, pid=123, ip="10.0.0.1")


# One sample instance of every class (constructed as the runtime would).
SAMPLES: list[E.EmberError] = [
    E.EmberError("plain"),
    _task_error(ValueError("boom")),
    E.TaskCancelledError("abcd", "by user"),
    E.WorkerCrashedError(),
    E.LocalRayletDiedError(),
    E.TaskUnschedulableError("node 1 is dead"),
    E.UserCodeException("wrapped"),
    E.GetTimeoutError("Get timed out: some object(s) not ready."),
    E.PlasmaObjectNotAvailable(),
    E.ObjectRefStreamEndOfStreamError(),
    E.RayActorError("a1", "msg"),
    E.ActorDiedError(actor_id="a1", class_name="C", pid=7, error_message="killed"),
    E.ActorDiedError(_task_error(RuntimeError("bad init"), "C.__init__")),
    E.ActorUnavailableError("connection lost", b"\x01\x02"),
    E.ActorUnschedulableError("no node"),
    E.AsyncioActorExit(),
    E.PendingCallsLimitExceeded("too many"),
    E.TaskPlacementGroupRemoved(),
    E.ActorPlacementGroupRemoved(),
    E.ObjectLostError("ff00", "addr", "site"),
    E.ObjectFetchTimedOutError("ff00", "addr", ""),
    E.ReferenceCountingAssertionError("ff00", "", ""),
    E.ObjectFreedError("ff00"),
    E.OwnerDiedError("ff00", "10.0.0.2:1234", ""),
    E.ObjectReconstructionFailedError("ff00"),
    E.ObjectReconstructionFailedMaxAttemptsExceededError("ff00"),
    E.ObjectReconstructionFailedLineageEvictedError("ff00"),
    E.ObjectStoreFullError(object_size_bytes=3 << 20, capacity_bytes=2 << 20, used_bytes=1 << 20),
    E.OutOfDiskError(object_size_bytes=10, disk_path="/tmp", disk_usage_fraction=0.97),
    E.OutOfMemoryError("node low on memory"),
    E.NodeDiedError("node 1 died"),
    E.RaySystemError("daemon killed", "tb"),
    E.RayChannelError("chan"),
    E.RayChannelTimeoutError("chan timeout"),
    E.RayCgraphCapacityExceeded("full"),
    E.RpcError("rpc failed", 14),
    E.RuntimeEnvSetupError("pip failed"),
    E.CrossLanguageError("from java"),
    E.UnserializableException("Traceback ... Foo: x"),
    E.AuthenticationError("bad token"),
]


def test_every_ray_name_exists() -> None:
    missing = [n for n in RAY_NAMES if not hasattr(E, n)]
    assert missing == []
    for name in E.__all__:
        assert hasattr(E, name), name


def test_every_public_class_has_a_sample() -> None:
    classes = {getattr(E, n) for n in E.__all__ if isinstance(getattr(E, n), type)}
    sampled = {type(s) for s in SAMPLES}
    assert classes - sampled == set()


def test_aliases_and_builtin_bases() -> None:
    assert E.RayError is E.EmberError
    assert E.TaskError is E.RayTaskError
    assert E.ActorError is E.RayActorError
    assert issubclass(E.GetTimeoutError, TimeoutError)
    assert issubclass(E.RayChannelTimeoutError, TimeoutError)
    assert issubclass(E.ReferenceCountingAssertionError, AssertionError)
    assert issubclass(E.ActorDiedError, E.RayActorError)
    assert issubclass(E.ActorUnavailableError, E.RayActorError)
    assert issubclass(E.OwnerDiedError, E.ObjectLostError)
    assert issubclass(E.ObjectReconstructionFailedMaxAttemptsExceededError,
                      E.ObjectReconstructionFailedError)
    assert issubclass(E.RayChannelError, E.RaySystemError)
    for cls in E.RAY_EXCEPTION_TYPES:
        assert issubclass(cls, E.EmberError)


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "cloudpickle"])
@pytest.mark.parametrize("exc", SAMPLES, ids=lambda e: type(e).__name__)
def test_pickle_round_trip(exc: E.EmberError, dumps: Any) -> None:
    back = pickle.loads(dumps(exc))
    assert type(back) is type(exc)
    assert str(back) == str(exc)
    assert repr(back.args) == repr(exc.args)
    assert set(back.__dict__) == set(exc.__dict__)


def test_to_bytes_from_bytes() -> None:
    err = E.OwnerDiedError("ff00", "addr", "")
    back = E.EmberError.from_bytes(err.to_bytes())
    assert type(back) is E.OwnerDiedError and str(back) == str(err)
    assert isinstance(E.EmberError.from_bytes(b"garbage"), E.UnserializableException)


# --------------------------------------------------------------------- RayTaskError
def test_task_error_str_shows_remote_traceback_like_ray() -> None:
    err = _task_error(ValueError("boom"))
    text = str(err)
    lines = text.split("\n")
    assert lines[0] == "ray::f() (pid=123, ip=10.0.0.1)"
    assert lines[1].startswith("  File ")
    assert lines[-1] == "ValueError: boom"
    assert "Traceback (most recent call last)" not in text
    assert err.function_name == "f" and err.pid == 123 and err.ip == "10.0.0.1"


def test_task_error_hides_ember_internal_frames() -> None:
    internal = E._EMBER_PACKAGE_DIR + "shells/worker/executor.py"
    tb = (
        "Traceback (most recent call last):\n"
        f'  File "{internal}", line 10, in run_task\n'
        "    result = fn(*args)\n"
        '  File "/home/u/script.py", line 3, in f\n'
        "    raise ValueError('boom')\n"
        "ValueError: boom\n"
    )
    err = E.RayTaskError("f", tb, ValueError("boom"), "ray::f", 5, "1.2.3.4")
    text = str(err)
    assert "executor.py" not in text and "fn(*args)" not in text
    assert '/home/u/script.py", line 3, in f' in text
    assert text.startswith("ray::f() (pid=5, ip=1.2.3.4)\n")


def test_task_error_for_actor_method_names_actor() -> None:
    err = E.RayTaskError("A.m", "Traceback (most recent call last):\nKeyError: 1", KeyError(1),
                         None, 9, "h", actor_repr="A(x=1)", actor_id="abc")
    assert str(err).split("\n")[0] == "ray::A.m() (pid=9, ip=h, actor_id=abc, repr=A(x=1))"


def test_as_instanceof_cause_is_both() -> None:
    err = _task_error(ValueError("boom"))
    dual = err.as_instanceof_cause()
    assert isinstance(dual, ValueError) and isinstance(dual, E.RayTaskError)
    assert type(dual).__name__ == "RayTaskError(ValueError)"
    assert dual.cause is err.cause and str(dual) == str(err)
    assert dual.traceback_str == err.traceback_str and dual.pid == 123
    with pytest.raises(ValueError):
        raise dual
    # one dynamic class per user class
    assert type(_task_error(ValueError("other")).as_instanceof_cause()) is type(dual)


class CustomError(Exception):
    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def test_dual_forwards_user_attributes_and_pickles() -> None:
    dual = _task_error(CustomError(7, "x")).as_instanceof_cause()
    assert isinstance(dual, CustomError)
    assert dual.code == 7 and dual.detail == "x"
    for dumps in (pickle.dumps, cloudpickle.dumps):
        back = pickle.loads(dumps(dual))
        assert type(back) is type(dual)
        assert isinstance(back, CustomError) and isinstance(back, E.RayTaskError)
        assert back.code == 7 and str(back) == str(dual)
        assert type(back.cause) is CustomError and back.cause.args == ("7: x",)


def test_dual_of_locally_defined_class_pickles_with_cloudpickle() -> None:
    class LocalError(Exception):
        pass

    dual = _task_error(LocalError("l")).as_instanceof_cause()
    back = cloudpickle.loads(cloudpickle.dumps(dual))
    assert isinstance(back, E.RayTaskError) and type(back).__name__ == "RayTaskError(LocalError)"
    assert str(back.cause) == "l"


def test_fallback_when_user_class_cannot_be_subclassed() -> None:
    class Sealed(Exception):
        def __init_subclass__(cls, **kwargs: Any) -> None:
            raise TypeError("sealed")

    err = _task_error(Sealed("s"))
    assert err.as_instanceof_cause() is err
    assert isinstance(err.cause, Sealed)


def test_fallback_when_user_class_cannot_be_constructed() -> None:
    class NoNew(Exception):
        def __new__(cls, *args: Any) -> "NoNew":
            if cls is not NoNew:
                raise TypeError("no subclass instances")
            return super().__new__(cls, *args)

    err = _task_error(NoNew("n"))
    assert err.as_instanceof_cause() is err


def test_dual_keeps_c_level_fields_of_oserror() -> None:
    dual = _task_error(FileNotFoundError(2, "no such file")).as_instanceof_cause()
    assert isinstance(dual, FileNotFoundError) and isinstance(dual, OSError)
    assert dual.errno == 2 and dual.strerror == "no such file"
    assert pickle.loads(pickle.dumps(dual)).errno == 2


def test_dual_of_abc_exception_and_keyboard_interrupt() -> None:
    import abc

    class Base(Exception, metaclass=abc.ABCMeta):
        pass

    class Leaf(Base):
        pass

    assert isinstance(_task_error(Leaf("x")).as_instanceof_cause(), Base)
    dual = _task_error(KeyboardInterrupt()).as_instanceof_cause()
    assert isinstance(dual, KeyboardInterrupt) and isinstance(dual, E.RayTaskError)


def test_base_exception_causes_are_not_wrapped() -> None:
    err = _task_error(Exception("plain"))
    assert err.as_instanceof_cause() is err
    ember_err = _task_error(E.EmberError("x"))
    assert ember_err.as_instanceof_cause() is ember_err


def test_ember_error_cause_gets_dual() -> None:
    died = E.ActorDiedError(actor_id="a")
    dual = _task_error(died).as_instanceof_cause()
    assert isinstance(dual, E.ActorDiedError) and isinstance(dual, E.RayTaskError)
    assert pickle.loads(pickle.dumps(dual)).actor_id == "a"


def test_nested_task_error_wraps_innermost_user_class() -> None:
    inner = _task_error(ValueError("inner"), "f").as_instanceof_cause()
    outer = _task_error(inner, "g")
    dual = outer.as_instanceof_cause()
    assert isinstance(dual, ValueError) and isinstance(dual, E.RayTaskError)
    assert dual.cause is outer.cause
    assert "ray::g()" in str(dual)
    assert pickle.loads(pickle.dumps(dual)).cause.cause.args == ("inner",)


def test_cause_with_custom_init_signature_round_trips() -> None:
    class NeedsTwo(Exception):
        def __init__(self, a: int, b: int) -> None:
            super().__init__(a)  # args == (a,): plain pickle cannot rebuild this
            self.b = b

    err = _task_error(NeedsTwo(1, 2))
    back = cloudpickle.loads(cloudpickle.dumps(err))
    assert type(back.cause).__name__ == "NeedsTwo" and back.cause.b == 2
    dual = cloudpickle.loads(cloudpickle.dumps(err.as_instanceof_cause()))
    assert dual.b == 2 and isinstance(dual, E.RayTaskError)


def test_unpicklable_cause_is_replaced() -> None:
    class HoldsLock(Exception):
        def __init__(self) -> None:
            super().__init__()
            self.lock = threading.Lock()

    err = _task_error(HoldsLock())
    assert type(err.cause) is E.EmberError
    assert "isn't serializable" in str(err.cause)
    assert type(pickle.loads(pickle.dumps(err))) is E.RayTaskError


@pytest.mark.timeout(60)
def test_dual_crosses_a_process_boundary() -> None:
    dual = _task_error(KeyError("k")).as_instanceof_cause()
    code = (
        "import pickle, sys\n"
        "import ember.exceptions as E\n"
        "e = pickle.loads(sys.stdin.buffer.read())\n"
        "assert isinstance(e, KeyError) and isinstance(e, E.RayTaskError), type(e)\n"
        "print(type(e).__name__)\n"
        "print(str(e).splitlines()[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(dual),
                         capture_output=True, timeout=60, check=True)
    assert out.stdout.decode().splitlines() == ["RayTaskError(KeyError)", "ray::f() (pid=123, ip=10.0.0.1)"]


# ---------------------------------------------------------------------- messages
def test_actor_died_in_init_shows_traceback() -> None:
    cause = E.RayTaskError("C.__init__", "Traceback (most recent call last):\nRuntimeError: bad",
                           RuntimeError("bad"), None, 1, "h", actor_id="deadbeef")
    err = E.ActorDiedError(cause)
    assert err.actor_init_failed and err.actor_id == "deadbeef" and err.cause is cause
    assert "creation task" in str(err) and "RuntimeError: bad" in str(err)
    assert E.ActorDiedError.from_task_error(cause).actor_init_failed


def test_actor_died_system_message() -> None:
    err = E.ActorDiedError(actor_id=b"\xab\xcd", class_name="Counter", pid=42, name="c",
                           namespace="ns", ip="1.1.1.1", error_message="worker killed",
                           never_started=True, preempted=True)
    text = str(err)
    assert text.startswith(E.ActorDiedError.BASE_ERROR_MSG)
    for piece in ("class_name: Counter", "actor_id: abcd", "pid: 42", "name: c",
                  "namespace: ns", "ip: 1.1.1.1", "worker killed", "never ran"):
        assert piece in text
    assert not err.actor_init_failed and err.preempted and err.actor_id == "abcd"


def test_actor_unavailable_message() -> None:
    err = E.ActorUnavailableError("restarting", "a1")
    assert isinstance(err, E.RayActorError)
    assert "actor a1 is unavailable: restarting" in str(err)
    assert "may or may not have been executed" in str(err)


def test_object_lost_messages() -> None:
    assert str(E.ObjectLostError("ab", "", "at f.py:3")).startswith(
        "Failed to retrieve object ab. The ObjectRef was created at: at f.py:3")
    assert "All copies of ab have been lost" in str(E.ObjectLostError("ab"))
    assert "owner at 1.2.3.4:5 has exited" in str(E.OwnerDiedError("ab", "1.2.3.4:5"))
    assert "max_retries" in str(E.ObjectReconstructionFailedMaxAttemptsExceededError("ab"))
    assert "lineage" in str(E.ObjectReconstructionFailedLineageEvictedError("ab"))
    assert "timed out" in str(E.ObjectFetchTimedOutError("ab"))


def test_object_lost_detail_has_its_own_place_and_survives_pickling() -> None:
    import pickle
    err = E.ObjectLostError("ab", "1.2.3.4:5", detail="node 127.0.0.1:9 is gone")
    text = str(err)
    assert text.startswith("Failed to retrieve object ab. To see information about where this ObjectRef was "
                           "created in Python, set the environment variable EMBER_RECORD_REF_CREATION_SITES=1")
    assert "created at" not in text and err.call_site == ""
    assert text.endswith("\n\nDetail: node 127.0.0.1:9 is gone")
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == text and back.args == ("ab", "1.2.3.4:5", "")
    owner = E.OwnerDiedError("ab", "1.2.3.4:5", detail="connection refused")
    assert "owner at 1.2.3.4:5 has exited" in str(owner) and str(owner).endswith("Detail: connection refused")


def test_object_store_full_names_sizes() -> None:
    text = str(E.ObjectStoreFullError("put failed", object_size_bytes=3 * 1024 ** 2,
                                      capacity_bytes=2 * 1024 ** 3, used_bytes=100))
    assert text.startswith("put failed\n")
    assert "3.00 MiB (3145728 bytes)" in text
    assert "2.00 GiB (2147483648 bytes)" in text and "100 B in use" in text
    assert "ember memory" in str(E.ObjectStoreFullError())


def test_other_messages() -> None:
    assert str(E.TaskCancelledError("t1")) == "Task: t1 was cancelled. "
    assert "cancelled" in str(E.TaskCancelledError())
    assert str(E.TaskUnschedulableError("x")) == "The task is not schedulable: x"
    assert str(E.ActorUnschedulableError("x")) == "The actor is not schedulable: x"
    assert str(E.RuntimeEnvSetupError("pip")) == "Failed to set up runtime environment.\npip"
    assert str(E.RaySystemError("boom")) == "System error: boom"
    assert "97% used at /tmp" in str(E.OutOfDiskError(disk_path="/tmp", disk_usage_fraction=0.97))
    assert str(E.GetTimeoutError("Get timed out")) == "Get timed out"
