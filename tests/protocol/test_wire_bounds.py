"""Bounded decoding, the strict handshake decoder, sealed records and handshake admission.

Fuzzed with hypothesis: random bytes, random msgpack structures with extension values of
any tag, depth bombs and huge declared lengths may raise ProtocolError and nothing else.
"""
import os
import struct
import subprocess
import sys

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ember.protocol import auth, codec, records
from ember.protocol import messages as m
from ember.protocol.admission import HandshakeAdmission, RefusalLog
from ember.protocol.framing import Framer, ProtocolError, encode_frame, frame_header

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _depth_bomb(depth: int, tag: int = 1) -> bytes:
    value = msgpack.ExtType(tag, msgpack.packb([b"x"]))
    for _ in range(depth):
        value = msgpack.ExtType(tag, msgpack.packb([value]))
    return msgpack.packb([codec.KIND_ONEWAY, 0, value])


# --- depth bombs -----------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [200, 5000])
def test_depth_bomb_is_a_protocol_error_not_a_crash(depth):
    # In a child process: before the fix this overflowed the C stack (segfault, exit -11).
    import inspect
    code = ("import msgpack\n" + inspect.getsource(_depth_bomb) +
            f"from ember.protocol import codec\n"
            f"from ember.protocol.framing import ProtocolError\n"
            f"for decode in (codec.decode, codec.decode_handshake):\n"
            f"    try:\n        decode(_depth_bomb({depth}))\n"
            f"    except ProtocolError as e:\n        print('refused', e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("refused") == 2


def test_nesting_within_the_bound_still_decodes():
    inner = m.ErrorReply("k", "v", None)
    nested = m.Published("ch", b"k", [inner])  # a message inside a message
    assert codec.decode(codec.encode(codec.KIND_ONEWAY, 0, nested))[2] == nested


def test_too_many_messages_in_one_frame_is_refused():
    payload = msgpack.packb([codec.KIND_ONEWAY, 0, [msgpack.ExtType(4, b"\x90")] * (codec.MESSAGES_PER_FRAME_MAX + 1)])
    with pytest.raises(ProtocolError, match="more than"):
        codec.decode(payload)


@pytest.mark.parametrize("header", [
    b"\xdd\xff\xff\xff\xff",          # array32 of 4 G elements
    b"\xdf\xff\xff\xff\xff",          # map32 of 4 G pairs
    b"\xc6\xff\xff\xff\xff",          # bin32 of 4 GiB
    b"\xdb\xff\xff\xff\xff",          # str32 of 4 GiB
    b"\xc9\xff\xff\xff\xff\x01",      # ext32 of 4 GiB
    b"\x93\x03\x00\xdd\x7f\xff\xff\xff",  # [kind, id, array of 2 G elements]
])
def test_huge_declared_lengths_are_refused(header):
    for decode in (codec.decode, codec.decode_handshake):
        with pytest.raises(ProtocolError):
            decode(header + b"\x00" * 64)


# --- the handshake decoder -------------------------------------------------------------------
def test_handshake_decoder_accepts_the_three_handshake_messages():
    for msg in (m.Challenge(os.urandom(32)), m.AuthResponse(os.urandom(32), os.urandom(32), "driver"),
                m.AuthOk(os.urandom(32))):
        assert codec.decode_handshake(codec.encode(codec.KIND_ONEWAY, 0, msg)) == msg


@pytest.mark.parametrize("frame", [
    codec.encode(codec.KIND_ONEWAY, 0, m.GetNodes()),                      # any other message
    codec.encode(codec.KIND_REQUEST, 7, m.AuthOk(b"p" * 32)),              # not one-way
    codec.encode(codec.KIND_ONEWAY, 0, m.AuthResponse(b"p" * 32, b"n" * 32, "x" * 100)),  # long field
    codec.encode(codec.KIND_ONEWAY, 0, m.Challenge(b"n" * 1000)),          # long nonce
    msgpack.packb([3, 0, msgpack.ExtType(1, msgpack.packb([msgpack.ExtType(1, b"")]))]),  # nested
    msgpack.packb([3, 0, {"a": 1}]),
    b"\x00" * 2000,                                                        # too long
])
def test_handshake_decoder_refuses_everything_else(frame):
    with pytest.raises(ProtocolError):
        codec.decode_handshake(frame)


def test_framer_refuses_a_large_handshake_frame_from_its_header():
    f = Framer(codec.HANDSHAKE_FRAME_MAX_BYTES)
    f.feed(frame_header(64 * 1024 * 1024))  # only the header: nothing is buffered first
    with pytest.raises(ProtocolError):
        f.next_frame()


# --- fuzz ------------------------------------------------------------------------------------
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(allow_nan=False),
                     st.binary(max_size=40), st.text(max_size=20))


def _ext(children):
    tags = st.sampled_from([1, 2, 3, 4, 5, 20, 21, 126, 127, 0, 99])
    return st.builds(lambda tag, fields: msgpack.ExtType(tag, msgpack.packb(fields, use_bin_type=True)),
                     tags, st.lists(children, max_size=4))


_values = st.recursive(_scalars, lambda children: st.one_of(
    st.lists(children, max_size=5), st.dictionaries(st.text(max_size=5), children, max_size=3), _ext(children)),
    max_leaves=30)


@FUZZ
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes(data):
    for decode in (codec.decode, codec.decode_handshake):
        try:
            decode(data)
        except ProtocolError:
            pass


@FUZZ
@given(st.sampled_from([0, 1, 2, 3, 9, -1]), st.integers(-5, 2**33), _values)
def test_fuzz_adversarial_structures(kind, request_id, value):
    payload = msgpack.packb([kind, request_id, value], use_bin_type=True)
    for decode in (codec.decode, codec.decode_handshake):
        try:
            decode(payload)
        except ProtocolError:
            pass


@FUZZ
@given(st.binary(min_size=1, max_size=300), st.integers(0, 299), st.integers(1, 255))
def test_fuzz_mutated_handshake_frames(nonce_seed, at, xor):
    frame = bytearray(codec.encode(codec.KIND_ONEWAY, 0, m.AuthResponse(nonce_seed[:32], b"n" * 32, "driver")))
    at %= len(frame)
    frame[at] ^= xor
    try:
        codec.decode_handshake(bytes(frame))
    except ProtocolError:
        pass


# --- sealed records --------------------------------------------------------------------------
def _pair():
    to_server, _ = auth.record_keys(b"token", b"s" * 32, b"c" * 32)
    return records.Sealer(to_server, 1 << 20), records.Opener(to_server)


def _pieces(*payloads):
    out = []
    for p in payloads:
        out += [frame_header(len(p)), p]
    return out


def _records(data: bytes):
    f = Framer(1 << 21)
    f.trailer_bytes = records.MAC_BYTES
    f.feed(data)
    out = []
    while (r := f.next_frame()) is not None:
        out.append(r)
    return out


def test_records_round_trip_in_order():
    sealer, opener = _pair()
    wire = sealer.seal(_pieces(b"a", b"bb")) + sealer.seal(_pieces(b"ccc"))
    got = [bytes(f) for r in _records(wire) for f in opener.open(r)]
    assert got == [b"a", b"bb", b"ccc"]


def test_record_larger_than_the_limit_is_split():
    sealer, opener = _pair()
    big = [os.urandom(700_000), os.urandom(700_000), b"x"]
    got = [bytes(f) for r in _records(sealer.seal(_pieces(*big))) for f in opener.open(r)]
    assert got == big


@pytest.mark.parametrize("attack", ["flip", "replay", "reorder", "drop", "wrong_key", "inject"])
def test_tampered_records_are_refused(attack):
    sealer, opener = _pair()
    r1, r2 = _records(sealer.seal(_pieces(b"first")) + sealer.seal(_pieces(b"second")))
    if attack == "flip":
        r1 = r1[:6] + bytes([r1[6] ^ 1]) + r1[7:]
        seq = [r1]
    elif attack == "replay":
        seq = [r1, r1]
    elif attack == "reorder":
        seq = [r2, r1]
    elif attack == "drop":
        seq = [r2]
    elif attack == "wrong_key":
        other = records.Sealer(auth.record_keys(b"other", b"s" * 32, b"c" * 32)[0], 1 << 20)
        seq = _records(other.seal(_pieces(b"first")))
    else:  # a frame without a MAC, as a relay without the token would write it
        seq = _records(encode_frame(codec.encode(codec.KIND_REQUEST, 1, m.GetNodes())) + b"\x00" * 16)
    with pytest.raises(ProtocolError):
        for r in seq:
            opener.open(r)


def test_directions_have_distinct_keys():
    a = auth.record_keys(b"t", b"s" * 32, b"c" * 32)
    b = auth.record_keys(b"t", b"s" * 32, b"d" * 32)
    assert a[0] != a[1] and a != b


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_records(data):
    _, opener = _pair()
    try:
        for r in _records(frame_header(len(data)) + data + b"\x00" * 16):
            opener.open(r)
    except ProtocolError:
        pass


# --- admission -------------------------------------------------------------------------------
def test_admission_closes_the_oldest_pending_connection():
    adm = HandshakeAdmission(pending_max=2)
    assert adm.opened(1) == [] and adm.opened(2) == []
    assert adm.opened(3) == [1]
    adm.finished(2)
    assert adm.opened(4) == []
    assert adm.opened(5) == [3]
    adm.check_invariants()


def test_refusal_log_is_rate_limited():
    rl = RefusalLog(interval_s=10)
    assert rl.refused("a", now=0.0) == "a"
    assert rl.refused("b", now=1.0) is None
    assert rl.refused("c", now=2.0) is None
    line = rl.refused("d", now=11.0)
    assert line is not None and line.startswith("d") and "2 more" in line
