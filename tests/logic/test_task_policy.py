from ember.logic.owner import task_policy as tp


class Cause(Exception):
    pass


class Wrapped(Exception):
    def __init__(self, cause):
        self.cause = cause


def test_system_failures_retry_while_attempts_remain():
    assert tp.should_retry(max_retries=3, attempt=2, is_system_failure=True, retry_exceptions=False, error=Exception())
    assert not tp.should_retry(max_retries=3, attempt=3, is_system_failure=True, retry_exceptions=False,
                               error=Exception())
    assert tp.should_retry(max_retries=-1, attempt=1000, is_system_failure=True, retry_exceptions=False,
                           error=Exception())


def test_application_errors_need_retry_exceptions():
    err = Wrapped(Cause())
    assert not tp.should_retry(max_retries=3, attempt=0, is_system_failure=False, retry_exceptions=False, error=err)
    assert tp.should_retry(max_retries=3, attempt=0, is_system_failure=False, retry_exceptions=True, error=err)
    assert tp.should_retry(max_retries=3, attempt=0, is_system_failure=False, retry_exceptions=[Cause], error=err)
    assert not tp.should_retry(max_retries=3, attempt=0, is_system_failure=False, retry_exceptions=[KeyError],
                               error=err)


def test_lease_requests_bounded_by_backlog_and_max():
    assert tp.lease_requests_to_send(10, 0, 4) == 4
    assert tp.lease_requests_to_send(10, 3, 4) == 1
    assert tp.lease_requests_to_send(1, 0, 4) == 1
    assert tp.lease_requests_to_send(0, 2, 4) == 0


def test_pipelining_only_for_known_short_tasks():
    assert tp.pipeline_depth(None, 4, 0.005) == 1
    assert tp.pipeline_depth(1.0, 4, 0.005) == 1
    assert tp.pipeline_depth(0.0003, 4, 0.005) == 4
    assert tp.moving_average(None, 2.0) == 2.0
    assert tp.moving_average(1.0, 2.0, weight=0.5) == 1.5


def test_locality_prefers_the_node_holding_most_argument_bytes():
    here, there = "10.0.0.1:1", "10.0.0.2:1"
    assert tp.preferred_node([(there, 50 << 20), (here, 1 << 20)], here, 1 << 20) == there
    assert tp.preferred_node([(there, 10), (here, 0)], here, 1 << 20) is None   # too small to matter
    assert tp.preferred_node([(here, 50 << 20)], here, 1 << 20) is None
    assert tp.preferred_node([("", 5)], here, 0) is None


def test_arguments_inline_only_while_small_and_within_the_task_budget():
    assert tp.may_inline_arg(100, 0, max_each_bytes=1000, max_total_bytes=10_000)
    assert not tp.may_inline_arg(1001, 0, max_each_bytes=1000, max_total_bytes=10_000)  # too big alone
    assert tp.may_inline_arg(1000, 9_000, max_each_bytes=1000, max_total_bytes=10_000)   # exactly fills it
    assert not tp.may_inline_arg(1000, 9_001, max_each_bytes=1000, max_total_bytes=10_000)
