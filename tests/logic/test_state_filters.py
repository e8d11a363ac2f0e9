"""ember.logic.state_filters: the state API's one filter rule."""
import pytest

from ember.logic.state_filters import matches


def test_equality_ids_as_hex_and_caseless_states():
    row = {"state": "ALIVE", "name": "Counter", "node_id": b"\x01\x02"}
    assert matches(row, "state", "=", "alive") and not matches(row, "state", "!=", "alive")
    assert matches(row, "node_id", "=", "0102")
    assert not matches(row, "name", "=", "counter")       # only state-like columns ignore case
    assert matches(row, "missing", "!=", "x")


def test_other_predicates_are_refused():
    with pytest.raises(ValueError, match="predicate"):
        matches({}, "state", ">", "ALIVE")
