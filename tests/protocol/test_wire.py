"""Framing and codec: round trips, arbitrary chunking, garbage rejected."""
import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ember.protocol import codec
from ember.protocol import messages as m
from ember.protocol.framing import Framer, ProtocolError, encode_frame


def spec(**kw):
    base = dict(task_id=b"t" * 16, job_id=b"j", function_id=b"f", function_blob=None, name="f",
                args=[[0, b"x"], [1, b"o" * 20, "127.0.0.1:1"]], kwarg_names=[], num_returns=1,
                owner_address="127.0.0.1:1", max_retries=3, retry_exceptions=False, attempt=0,
                resources={"CPU": 1.0}, gpu_ids=[], actor_id=None, sequence_no=0, runtime_env=None)
    base.update(kw)
    return m.TaskSpec(**base)


def test_nested_message_round_trip():
    msg = m.PushTask(spec())
    kind, rid, out = codec.decode(codec.encode(codec.KIND_REQUEST, 7, msg))
    assert (kind, rid, out) == (codec.KIND_REQUEST, 7, msg)


def test_list_of_messages_round_trip():
    done = m.TaskDone([m.ReturnObject(b"o", b"data", None, "", 4)], None, False)
    assert codec.decode(codec.encode(codec.KIND_REPLY, 1, done))[2] == done


@given(st.lists(st.binary(max_size=300), max_size=20), st.integers(min_value=1, max_value=64))
@settings(max_examples=100, deadline=None)
def test_framer_reassembles_any_chunking(payloads, chunk):
    stream = b"".join(encode_frame(p) for p in payloads)
    f = Framer()
    out = []
    for i in range(0, len(stream), chunk):
        f.feed(stream[i:i + chunk])
        while (frame := f.next_frame()) is not None:
            out.append(frame)
    assert out == payloads


def test_oversized_frame_is_a_protocol_error():
    f = Framer(max_frame_bytes=10)
    f.feed(encode_frame(b"x" * 11))
    with pytest.raises(ProtocolError):
        f.next_frame()


@pytest.mark.parametrize("payload", [
    b"\xc1",                                              # invalid msgpack
    msgpack.packb({"op": "x"}),                           # a raw dict
    msgpack.packb([0, 1]),                                # wrong shape
    msgpack.packb([9, 1, msgpack.ExtType(4, msgpack.packb([]))]),   # unknown kind
    msgpack.packb([0, 1, msgpack.ExtType(120, b"\x90")]),  # unknown tag
    msgpack.packb([0, 1, msgpack.ExtType(18, msgpack.packb([1, 2]))]),  # wrong field count
    msgpack.packb([0, 1, msgpack.ExtType(18, msgpack.packb(["not bytes"]))]),  # wrong field type
])
def test_garbage_is_a_protocol_error(payload):
    with pytest.raises(ProtocolError):
        codec.decode(payload)


@given(st.binary(max_size=200))
@settings(max_examples=200, deadline=None)
def test_random_bytes_never_crash_the_decoder(data):
    try:
        codec.decode(data)
    except ProtocolError:
        pass


def test_messages_above_tag_126_round_trip_under_the_extended_code():
    from ember.protocol import codec

    @codec.message(4000)
    class _FarTag:
        name: str
        inner: object

    inner = m.Ok()
    kind, rid, msg = codec.decode(codec.encode(codec.KIND_ONEWAY, 7, _FarTag("x", inner)))
    assert (kind, rid, msg) == (codec.KIND_ONEWAY, 7, _FarTag("x", inner))
    with pytest.raises(ValueError):
        codec.message(127)(type("_Bad", (), {"__annotations__": {}}))
