"""The control store's node table: a node declared dead never comes back under its id."""
from ember.logic.control.nodes import NodeRecord, NodeTable, NodeVerdict


def _rec(node_id: bytes = b"n1") -> NodeRecord:
    return NodeRecord(node_id, "127.0.0.1:1", {"CPU": 1.0}, {"CPU": 1.0}, False, "/store", {})


def _beat(table: NodeTable, node_id: bytes, now: float) -> NodeVerdict:
    return table.heartbeat(node_id, {"CPU": 1.0}, [], 0, now)


def test_registered_node_heartbeats_alive() -> None:
    table = NodeTable(heartbeat_timeout_s=2.0)
    assert table.register(_rec(), now=0.0) is NodeVerdict.ACCEPTED
    assert _beat(table, b"n1", 1.0) is NodeVerdict.ALIVE
    assert table.expire(now=2.5) == []  # 1.5 s since the last heartbeat


def test_unknown_node_is_told_to_register() -> None:
    table = NodeTable(heartbeat_timeout_s=2.0)
    assert _beat(table, b"never", 0.0) is NodeVerdict.UNKNOWN


def test_silent_node_expires_and_its_heartbeat_is_refused_for_good() -> None:
    table = NodeTable(heartbeat_timeout_s=2.0)
    table.register(_rec(), now=0.0)
    assert table.expire(now=3.0) == [b"n1"]
    assert table.is_dead(b"n1")
    # The paused daemon resumes: its heartbeat says DEAD, and so does a new registration.
    assert _beat(table, b"n1", 3.1) is NodeVerdict.DEAD
    version = table.version
    assert table.register(_rec(), now=3.2) is NodeVerdict.DEAD
    assert table.is_dead(b"n1") and table.alive() == []
    assert table.version == version  # a refused registration changes nothing


def test_drained_node_cannot_register_again_but_a_new_id_can() -> None:
    table = NodeTable(heartbeat_timeout_s=2.0)
    table.register(_rec(), now=0.0)
    assert table.mark_dead(b"n1")
    assert not table.mark_dead(b"n1")  # once
    assert table.register(_rec(), now=1.0) is NodeVerdict.DEAD
    assert table.register(_rec(b"n2"), now=1.0) is NodeVerdict.ACCEPTED
    assert [r.node_id for r in table.alive()] == [b"n2"]


def test_alive_node_may_register_again() -> None:
    """The same daemon reconnecting after a dropped connection (not declared dead)."""
    table = NodeTable(heartbeat_timeout_s=2.0)
    table.register(_rec(), now=0.0)
    assert table.register(_rec(), now=1.0) is NodeVerdict.ACCEPTED
    assert _beat(table, b"n1", 2.5) is NodeVerdict.ALIVE
