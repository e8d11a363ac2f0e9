"""ember.shells.shared.serialization and ember.util.serialization."""
from __future__ import annotations

import io
import mmap
import struct
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ember.object_ref import ObjectRef
from ember.shells.shared import serialization as ser
from ember.shells.shared.serialization import (
    OOB_BYTES_THRESHOLD_BYTES,
    SerializedObject,
    deregister_serializer,
    deserialize,
    register_serializer,
    serialize,
)
from ember.util.serialization import FailureTuple, inspect_serializability


def roundtrip(value):
    return deserialize(serialize(value).to_bytes())


# --- round trips ----------------------------------------------------------------

plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    | st.binary(max_size=200),
    lambda inner: st.lists(inner, max_size=5) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=5), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(plain)
def test_roundtrip_builtins(value):
    obj = serialize(value)
    data = obj.to_bytes()
    assert len(data) == obj.total_bytes
    assert deserialize(data) == value
    assert deserialize(memoryview(data)) == value


def test_roundtrip_various_types():
    class_local = type("Local", (), {"x": 3})
    values = [None, 1, 2.5, "s", b"b", (1, "a"), [1, [2, [3, [4, [5]]]]], {"k": {1, 2}},
              frozenset({3}), complex(1, 2), list(range(1000)), {i: i for i in range(100)}]
    for value in values:
        assert roundtrip(value) == value
    fn = lambda x: x + 1  # noqa: E731 - pickled by value through cloudpickle
    assert roundtrip(fn)(1) == 2
    assert roundtrip(class_local).x == 3


def test_types_are_preserved_for_blobs():
    big = OOB_BYTES_THRESHOLD_BYTES
    out = roundtrip(b"a" * big)
    assert type(out) is bytes and out == b"a" * big
    out = roundtrip(bytearray(b"b" * big))
    assert type(out) is bytearray and out == bytearray(b"b" * big)
    out = roundtrip(memoryview(b"c" * 100))
    assert type(out) is memoryview and bytes(out) == b"c" * 100
    out = roundtrip([b"d" * big, 1, bytearray(10)])
    assert out == [b"d" * big, 1, bytearray(10)]
    out = roundtrip({"x": b"e" * big})
    assert out == {"x": b"e" * big}


def test_big_bytes_go_out_of_band_small_stay_in_band():
    big = serialize(b"x" * OOB_BYTES_THRESHOLD_BYTES)
    assert len(big.buffers) == 1
    assert len(big.metadata) < 200
    small = serialize(b"x" * (OOB_BYTES_THRESHOLD_BYTES - 1))
    assert small.buffers == []
    assert len(serialize((1, bytearray(OOB_BYTES_THRESHOLD_BYTES))).buffers) == 1


def test_numpy_out_of_band_and_readonly_from_bytes():
    arr = np.arange(100_000, dtype=np.float64)
    obj = serialize(arr)
    assert len(obj.buffers) == 1
    assert len(obj.metadata) < 500
    out = deserialize(obj.to_bytes())
    assert np.array_equal(out, arr)
    assert out.flags.writeable is False
    fortran = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    assert np.array_equal(roundtrip(fortran), fortran)
    strided = np.arange(20)[::2]  # not contiguous: pickled in-band
    assert np.array_equal(roundtrip(strided), strided)
    objects = np.array([1, "a", None], dtype=object)
    assert list(roundtrip(objects)) == [1, "a", None]


def test_layout_alignment_and_write_to_matches_to_bytes():
    value = {"a": np.ones(1000), "b": np.zeros(33, dtype=np.int8), "c": b"z" * 70_000}
    obj = serialize(value)
    assert len(obj.buffers) == 3
    data = obj.to_bytes()
    magic, count, meta_len = struct.unpack_from("<4sIQ", data, 0)
    assert magic == b"EMB1" and count == 3 and meta_len == len(obj.metadata)
    for i in range(count):
        offset, size = struct.unpack_from("<QQ", data, 16 + 16 * i)
        assert offset % 64 == 0 and size > 0
    target = bytearray(obj.total_bytes + 10)
    obj.write_to(memoryview(target))
    assert bytes(target[: obj.total_bytes]) == data
    with pytest.raises(ValueError):
        obj.write_to(memoryview(bytearray(obj.total_bytes - 1)))
    out = deserialize(data)
    assert np.array_equal(out["a"], value["a"]) and out["c"] == value["c"]


def test_zero_copy_from_readonly_mapping(tmp_path):
    arr = np.arange(1_000_000, dtype=np.float32)
    obj = serialize(arr)
    path = tmp_path / "obj"
    with open(path, "wb") as f:
        f.truncate(obj.total_bytes)
    with open(path, "r+b") as f:
        mm = mmap.mmap(f.fileno(), obj.total_bytes)
        obj.write_to(memoryview(mm))
        mm.close()
    with open(path, "rb") as f:
        ro = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    view = memoryview(ro)
    out = deserialize(view)
    assert out.flags.writeable is False
    mapped = np.frombuffer(view, dtype=np.uint8)
    assert np.shares_memory(out, mapped)
    assert np.array_equal(out, arr)
    del out, mapped
    view.release()
    ro.close()


def test_contained_refs_collected_and_rebuilt():
    r1 = ObjectRef(b"\x01" * 28, "owner-a")
    r2 = ObjectRef(b"\x02" * 28, "owner-b")
    obj = serialize([r1, {"inner": (r2, r1)}, 5])
    assert set(obj.contained_refs) == {r1, r2}
    out = deserialize(obj.to_bytes())
    assert out[0] == r1 and out[0].owner_address == "owner-a"
    assert out[1]["inner"][0].owner_address == "owner-b"
    assert serialize(r1).contained_refs == [r1]
    assert serialize((1, 2)).contained_refs == []


def test_unserializable_names_closure_variable():
    def make():
        lock = threading.Lock()
        return lambda: lock
    with pytest.raises(TypeError) as info:
        serialize(make())
    assert ("Could not serialize the argument: <lambda> closure variable 'lock' of type "
            "<class '_thread.lock'> cannot be pickled") in str(info.value)


def test_unserializable_names_nested_path_and_what():
    class Holder:
        def __init__(self):
            self.ok = 1
            self.inner = {"k": [1, threading.Lock()]}
    with pytest.raises(TypeError) as info:
        serialize((0, Holder()), what="the return value")
    text = str(info.value)
    assert text.startswith("Could not serialize the return value: tuple element 1 -> "
                           "Holder attribute 'inner' -> dict value for key 'k' -> list element 1")
    assert "<class '_thread.lock'>" in text
    with pytest.raises(TypeError, match="_thread.lock"):
        serialize(threading.Lock())


class Point:
    def __init__(self, x):
        self.x = x

    def __reduce__(self):
        raise TypeError("Point refuses default pickling")


def test_custom_serializer_register_and_deregister():
    with pytest.raises(TypeError):
        serialize(Point(1))
    register_serializer(Point, serializer=lambda p: p.x, deserializer=lambda x: Point(x * 10))
    try:
        out = roundtrip([Point(2), Point(3)])
        assert [p.x for p in out] == [20, 30]
    finally:
        deregister_serializer(Point)
    with pytest.raises(TypeError):
        serialize(Point(1))
    deregister_serializer(Point)  # unknown class: ignored
    with pytest.raises(ValueError):
        register_serializer(int, serializer=str, deserializer=int)


def test_bad_input_rejected():
    with pytest.raises(ValueError):
        deserialize(b"XXXX" + bytes(20))
    with pytest.raises(ValueError):
        deserialize(b"EM")
    data = serialize(np.arange(1000)).to_bytes()
    with pytest.raises(ValueError):
        deserialize(data[:-100])


def test_serialized_object_from_parts():
    obj = SerializedObject(b"\x80\x05K\x07.")
    assert deserialize(obj.to_bytes()) == 7
    assert obj.total_bytes == 16 + 5


# --- inspect_serializability --------------------------------------------------------


def test_inspect_serializability_ok():
    out = io.StringIO()
    assert inspect_serializability([1, 2], print_file=out) == (True, set())
    assert "Checking Serializability of [1, 2]" in out.getvalue()


def test_inspect_serializability_finds_closure_and_attribute():
    lock = threading.Lock()

    def task():
        return lock

    class Holder:
        def __init__(self):
            self.fine = 1
            self.bad = lock

    out = io.StringIO()
    ok, failures = inspect_serializability(task, name="task", print_file=out)
    assert ok is False
    assert failures == {FailureTuple(lock, "lock", task)}
    text = out.getvalue()
    assert "Checking Serializability of task" in text
    assert "closure variable" in text and "FailTuple(lock [obj=" in text

    holder = Holder()
    ok, failures = inspect_serializability(holder, print_file=out)
    assert ok is False
    assert {(f.name, f.parent is holder) for f in failures} == {("bad", True)}


def test_inspect_serializability_depth_limits_walk():
    class Inner:
        def __init__(self):
            self.lock = threading.Lock()

    class Outer:
        def __init__(self):
            self.inner = Inner()

    outer = Outer()
    ok, failures = inspect_serializability(outer, name="outer", depth=1, print_file=io.StringIO())
    assert ok is False
    assert [f.name for f in failures] == ["inner"]
    ok, failures = inspect_serializability(outer, depth=3, print_file=io.StringIO())
    assert [f.name for f in failures] == ["lock"]


def test_fast_path_used_for_plain_values():
    refs: list = []
    ref = ObjectRef(b"\x00" * 28)
    assert ser._is_plain((1, "a", [2.0, None], {"k": b"v"}, ref), 3, refs)
    assert refs == [ref]
    assert not ser._is_plain(b"x" * OOB_BYTES_THRESHOLD_BYTES, 3, [])
    assert not ser._is_plain(list(range(1000)), 3, [])
    assert not ser._is_plain([threading.Lock()], 3, [])
    obj = serialize([ref, ObjectRef(b"\x00" * 28), {"r": ref}])
    assert obj.contained_refs == [ref]  # unique by id
