"""The remote client's exactly-once rules (ember/logic/client_stream.py): numbering, acks,
resending after a reconnection, duplicates dropped, gaps refused, liveness."""
import pytest

from ember.logic.client_stream import Liveness, ReliableStream, StreamGap


def _send(stream: ReliableStream, payload: str) -> tuple[int, str]:
    seq = stream.stamp()
    stream.sent(seq, (seq, payload), len(payload))
    return seq, payload


def test_messages_are_numbered_and_kept_until_acknowledged():
    s = ReliableStream()
    for p in ("a", "bb", "ccc"):
        _send(s, p)
    assert s.unacked_bytes == 6
    s.acked(2)
    assert s.unacked_bytes == 3 and s.resend_after(2) == [(3, "ccc")]
    s.acked(1)                      # an old ack changes nothing
    assert s.acked_upto == 2
    s.check_invariants()


def test_an_ack_beyond_what_was_sent_is_a_bug():
    s = ReliableStream()
    _send(s, "a")
    with pytest.raises(StreamGap):
        s.acked(2)


def test_receiving_applies_each_number_once_in_order():
    r = ReliableStream()
    assert r.accept(1, 10) and r.accept(2, 5)
    assert not r.accept(1) and not r.accept(2)      # resent after a reconnection: dropped
    with pytest.raises(StreamGap):
        r.accept(4)
    assert r.received_upto == 2 and r.received_bytes_unacked == 15
    assert r.ack_sent() == 2 and r.received_bytes_unacked == 0


def test_a_reconnection_resends_exactly_what_the_peer_missed():
    """Sender and receiver lose a connection with messages in flight: the receiver says what it
    applied, the sender resends the rest, and the receiver ends with every message once."""
    sender, receiver = ReliableStream(), ReliableStream()
    applied = []
    msgs = [_send(sender, f"m{i}") for i in range(10)]
    for seq, payload in msgs[:6]:   # 6 arrive; 4 are lost with the connection
        if receiver.accept(seq):
            applied.append(payload)
    sender.acked(3)                 # only 3 had been acknowledged before the drop
    for seq, payload in sender.resend_after(receiver.received_upto):
        if receiver.accept(seq):
            applied.append(payload)
    assert applied == [f"m{i}" for i in range(10)]
    sender.check_invariants()


def test_a_resend_that_overlaps_what_arrived_is_applied_once():
    sender, receiver = ReliableStream(), ReliableStream()
    msgs = [_send(sender, f"m{i}") for i in range(5)]
    applied = [p for seq, p in msgs[:3] if receiver.accept(seq)]
    for seq, payload in sender.resend_after(1):     # a stale view of the receiver: resends 2..5
        if receiver.accept(seq):
            applied.append(payload)
    assert applied == [f"m{i}" for i in range(5)]


def test_liveness_silent_then_expired():
    live = Liveness(100.0)
    assert not live.is_silent(103.0, 4.0) and live.is_silent(104.5, 4.0)
    assert not live.is_expired(120.0, 30.0) and live.is_expired(130.5, 30.0)
    live.heard(129.0)
    assert not live.is_expired(130.5, 30.0)
