"""ember.logic.owner.generators: the owner's rules for one streaming generator."""
from hypothesis import given
from hypothesis import strategies as st

from ember.logic.owner import generators as g


def test_items_are_handed_out_in_order_whatever_order_they_arrive_in():
    s = g.GeneratorStream(None)
    assert s.item_arrived(2) == (True, True)
    assert not s.has_item()              # 1 is still missing
    assert s.item_arrived(1) == (True, True)
    assert s.take()[0] == 1 and s.take()[0] == 2
    s.check_invariants()


def test_a_retried_attempt_yields_no_duplicates():
    s = g.GeneratorStream(None)
    for i in (1, 2, 3):
        s.item_arrived(i)
    assert s.item_arrived(1) == (False, True)   # the retry's first item: dropped, acknowledged
    assert s.item_arrived(4) == (True, True)
    assert s.received == 4


def test_backpressure_holds_acknowledgements_until_the_consumer_catches_up():
    s = g.GeneratorStream(2)
    assert s.item_arrived(1) == (True, True)
    assert s.item_arrived(2) == (True, True)
    assert s.item_arrived(3) == (True, False)   # 3 - 0 consumed > 2
    assert s.take() == (1, [3])                  # consuming one releases it
    s.check_invariants()


def test_an_error_becomes_the_last_item_and_a_dropped_consumer_releases_the_producer():
    s = g.GeneratorStream(1)
    s.item_arrived(1)
    s.item_arrived(2)
    assert s.held_acks == [2]
    assert s.drop() == [2]
    s2 = g.GeneratorStream(None)
    s2.item_arrived(1)
    assert s2.finish(has_error=True) == 2
    assert s2.take()[0] == 1 and s2.take()[0] == 2 and s2.is_exhausted()


def test_kinds_travel_in_num_returns():
    assert g.num_returns_on_wire(3, None) == 3
    assert g.num_returns_on_wire("streaming", None) == g.STREAMING
    assert g.num_returns_on_wire("streaming", -1) == g.STREAMING
    assert g.backpressure_of(g.num_returns_on_wire("streaming", 5)) == 5
    assert g.num_returns_on_wire("dynamic", None) == g.DYNAMIC
    assert g.first_item_index(g.DYNAMIC) == 2 and g.first_item_index(g.STREAMING) == 1


@given(st.permutations(list(range(1, 12))), st.integers(min_value=0, max_value=3))
def test_any_arrival_order_with_repeats_hands_out_each_item_once_in_order(order, repeats):
    s = g.GeneratorStream(None)
    seen = []
    for i in order + order[:repeats]:
        s.item_arrived(i)
        while s.has_item():
            seen.append(s.take()[0])
        s.check_invariants()
    assert seen == list(range(1, 12))
