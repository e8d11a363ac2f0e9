"""Tasks with very many arguments: the task message stays bounded (issue #20).

Arguments inline into the task message only within a budget (``task_inline_args_max_bytes``,
Ray's 10 MiB ``task_rpc_inlined_bytes_limit``); the rest travel by reference and the executor
fetches them.  Before this, 20,000 list arguments made a ~600 MB message over the frame limit and
the task died as a misleading WorkerCrashedError.
"""
import pytest

import ember
from ember.config import CONFIG
from ember.shells.worker import task_submitter

pytestmark = pytest.mark.timeout(180)


@ember.remote
def sum_args(*args, **kwargs):
    return sum(sum(a) for a in args) + sum(sum(v) for v in kwargs.values())


def test_twenty_thousand_arguments_run(cluster):
    args = [[1] * 100 for _ in range(20_000)]
    assert ember.get(sum_args.remote(*args), timeout=150) == 2_000_000


def test_arguments_past_the_budget_travel_by_reference(cluster, monkeypatch):
    monkeypatch.setattr(CONFIG, "task_inline_args_max_bytes", 16 * 1024)
    seen = []
    real = task_submitter.encode_args

    def spy(cw, args, kwargs):
        out = real(cw, args, kwargs)
        seen.append(out[0])
        return out

    monkeypatch.setattr(task_submitter, "encode_args", spy)
    args = [[i] * 500 for i in range(40)]            # ~1.5 KB each, ~60 KB in all
    kwargs = {"extra": [1000] * 500}
    assert ember.get(sum_args.remote(*args, **kwargs), timeout=60) == sum(i * 500 for i in range(40)) + 500_000
    wire = seen[-1]
    inline_bytes = sum(len(a[1]) for a in wire if a[0] == 0)
    assert 0 < inline_bytes <= 16 * 1024
    assert sum(1 for a in wire if a[0] == 1) >= 20    # the rest went by reference


def test_owned_refs_inline_only_within_the_budget(cluster, monkeypatch):
    monkeypatch.setattr(CONFIG, "task_inline_args_max_bytes", 8 * 1024)
    refs = [ember.put([i] * 500) for i in range(30)]
    assert ember.get(sum_args.remote(*refs), timeout=60) == sum(i * 500 for i in range(30))
