"""The transfer wire's headers: round trips, MAC checks, bad input -> ProtocolError."""
from __future__ import annotations

import pytest

from ember.protocol import auth
from ember.protocol import transfer_wire as W


def _pair():
    to_server, to_client = auth.record_keys(b"token", b"s" * 32, b"c" * 32)
    return W.HeaderSealer(to_server), W.HeaderSealer(to_server)


def test_request_and_response_round_trip():
    out, inn = _pair()
    for oid, off, n in [(b"x" * 20, 0, 4 << 20), (b"y", 12345, 1), (b"z" * 32, 1 << 40, 0)]:
        header = W.pack_request(out, oid, off, n)
        assert len(header) == W.REQUEST_BYTES
        assert W.unpack_request(inn, header) == (oid, off, n)
    header = W.pack_response(out, W.STATUS_OK, 99, 3, 5)
    assert len(header) == W.RESPONSE_BYTES and W.unpack_response(inn, header) == (W.STATUS_OK, 99, 3, 5)


def test_a_changed_replayed_or_foreign_header_fails_the_mac():
    out, inn = _pair()
    header = W.pack_request(out, b"x" * 20, 0, 10)
    tampered = bytearray(header)
    tampered[25] ^= 1
    with pytest.raises(W.ProtocolError):
        W.unpack_request(inn, bytes(tampered))
    out, inn = _pair()
    header = W.pack_request(out, b"x" * 20, 0, 10)
    W.unpack_request(inn, header)
    with pytest.raises(W.ProtocolError):  # the counter moved on: a replay fails
        W.unpack_request(inn, header)
    other = W.HeaderSealer(auth.record_keys(b"other", b"s" * 32, b"c" * 32)[0])
    with pytest.raises(W.ProtocolError):
        W.unpack_request(other, W.pack_request(_pair()[0], b"x", 0, 1))


def test_bad_sizes_and_fields_are_refused():
    out, inn = _pair()
    with pytest.raises(W.ProtocolError):
        W.pack_request(out, b"", 0, 1)
    with pytest.raises(W.ProtocolError):
        W.pack_request(out, b"x" * 33, 0, 1)
    with pytest.raises(W.ProtocolError):
        W.unpack_request(inn, b"short")
    out, inn = _pair()
    with pytest.raises(W.ProtocolError):  # an error status never carries a payload
        W.unpack_response(inn, W.pack_response(out, W.STATUS_NOT_FOUND, 0, 0, 10))
    out, inn = _pair()
    with pytest.raises(W.ProtocolError):
        W.unpack_response(inn, W.pack_response(out, 9, 0, 0, 0))
