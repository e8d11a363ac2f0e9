"""Ray's ID classes (ember.ActorID, NodeID, ...) and ObjectRef's id constructors, without a cluster."""
import pickle

import pytest

import ember
from ember import ids


@pytest.mark.parametrize("cls", [ember.ActorID, ember.NodeID, ember.JobID, ember.TaskID, ember.WorkerID,
                                 ember.ObjectID, ember.PlacementGroupID, ember.UniqueID, ember.FunctionID,
                                 ember.ActorClassID])
def test_round_trips_nil_and_equality(cls):
    x = cls.from_random()
    assert cls.from_hex(x.hex()) == x and cls.from_binary(x.binary()) == x and cls(x.binary()) == x
    assert len(x.binary()) == cls.size() and x.hex() == x.binary().hex()
    assert hash(cls.from_hex(x.hex())) == hash(x) and not x.is_nil()
    assert cls.nil().is_nil() and cls.nil() == cls.nil() and cls.nil() != x
    assert pickle.loads(pickle.dumps(x)) == x
    assert repr(x).startswith(cls.__name__)


def test_ids_of_different_kinds_are_never_equal():
    raw = b"\x01" * 16
    assert ember.ActorID(raw) != ember.TaskID(raw) and ember.ActorID(raw) == ember.ActorID(raw)
    assert len({ember.ActorID(raw), ember.TaskID(raw)}) == 2


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="length 4"):
        ember.JobID(b"\x00" * 5)
    with pytest.raises(TypeError):
        ember.ActorID("not bytes")
    with pytest.raises(ValueError, match="hex"):
        ember.NodeID.from_hex("zz")


def test_job_id_int_and_object_id_task():
    assert ember.JobID.from_int(3).int() == 3 and ember.JobID.from_int(3).hex() == "03000000"
    oid = ember.ObjectID(b"\x02" * 16 + b"\x00" * 4)
    assert oid.task_id() == ember.TaskID(b"\x02" * 16)


def test_object_ref_constructors():
    assert ember.ObjectRef.nil().is_nil() and not ember.ObjectRef.from_random().is_nil()
    r = ember.ObjectRef.from_random()
    assert ember.ObjectRef.from_hex(r.hex()) == r and ember.ObjectRef.from_binary(r.binary()) == r
    with pytest.raises(ValueError):
        ember.ObjectRef.from_binary(b"short")


def test_actor_handle_id_is_the_public_class():
    from ember.actor import ActorID
    assert ActorID is ids.ActorID is ember.ActorID


def test_worker_modes():
    assert (ember.SCRIPT_MODE, ember.WORKER_MODE, ember.LOCAL_MODE) == (0, 1, 2)


def test_log_once():
    from ember.util import debug
    debug.reset_log_once()
    assert ember.util.log_once("k") and not ember.util.log_once("k") and ember.util.log_once("other")
    debug.reset_log_once("k")
    assert ember.util.log_once("k")
