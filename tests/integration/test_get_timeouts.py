"""Negative timeouts in get and wait behave as in Ray, for one ref and for a list alike.

Ray 2.x: ``get(..., timeout=-1)`` means no timeout (like None); ``wait`` refuses any negative
timeout with ``ValueError("The 'timeout' argument must be nonnegative. Received ...")``.
ember refuses the other negative values in ``get`` with the same message (Ray passes them
on and blocks forever).
"""
import time

import pytest

import ember

pytestmark = pytest.mark.timeout(60)


@ember.remote
def after(seconds: float, value: int) -> int:
    time.sleep(seconds)
    return value


def test_get_minus_one_waits_like_none_for_a_ref_and_a_list(cluster) -> None:
    assert ember.get(after.remote(0.5, 1), timeout=-1) == 1
    assert ember.get([after.remote(0.5, 2), after.remote(0, 3)], timeout=-1) == [2, 3]
    ready = ember.put(4)
    assert ember.get(ready, timeout=-1) == 4 and ember.get([ready], timeout=-1) == [4]


@pytest.mark.parametrize("timeout", [-2, -0.5])
def test_get_other_negative_timeouts_raise_the_same_error_both_ways(cluster, timeout) -> None:
    ref = ember.put(1)
    with pytest.raises(ValueError) as single:
        ember.get(ref, timeout=timeout)
    with pytest.raises(ValueError) as listed:
        ember.get([ref], timeout=timeout)
    assert str(single.value) == str(listed.value) == (
        f"The 'timeout' argument must be nonnegative. Received {timeout}")


@pytest.mark.parametrize("timeout", [-1, -0.5])
def test_wait_refuses_negative_timeouts(cluster, timeout) -> None:
    with pytest.raises(ValueError, match=f"The 'timeout' argument must be nonnegative. Received {timeout}"):
        ember.wait([ember.put(1)], timeout=timeout)


def test_zero_and_positive_timeouts_still_time_out(cluster) -> None:
    slow = after.remote(5, 0)
    for refs in (slow, [slow]):
        with pytest.raises(ember.exceptions.GetTimeoutError):
            ember.get(refs, timeout=0)
    assert ember.wait([slow], timeout=0) == ([], [slow])
    ember.cancel(slow, force=True)
