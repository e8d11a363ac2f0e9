"""Node labels on a local cluster: ``init(labels=)``, ``ember start --labels``, and bad input."""
from __future__ import annotations

import pytest

import ember
from cli_harness import CliHarness
from ember.util.scheduling_strategies import (DoesNotExist, Exists, In, NodeLabelSchedulingStrategy,
                                              NotIn)

pytestmark = pytest.mark.timeout(120)


@ember.remote(num_cpus=0)
def node_id() -> str:
    return ember.get_runtime_context().get_node_id()


def test_init_labels_reach_the_node_and_the_scheduler(no_cluster: None) -> None:
    ember.init(num_cpus=1, labels={"zone": "x", "tier": "gold"})
    (node,) = ember.nodes()
    assert node["Labels"] == {"zone": "x", "tier": "gold"}
    matching = NodeLabelSchedulingStrategy({"zone": In("x", "y"), "tier": Exists(), "gpu": DoesNotExist()})
    assert ember.get(node_id.options(scheduling_strategy=matching).remote(), timeout=60) == node["NodeID"]
    nobody = NodeLabelSchedulingStrategy({"zone": NotIn("x")})
    ready, _ = ember.wait([node_id.options(scheduling_strategy=nobody).remote()], timeout=1.0)
    assert ready == []


def test_init_rejects_bad_labels(no_cluster: None) -> None:
    with pytest.raises(ValueError, match="labels must be a dict"):
        ember.init(num_cpus=1, labels={"zone": 3})


def test_strategy_rejects_bad_expressions() -> None:
    with pytest.raises(ValueError, match="cannot both be empty"):
        NodeLabelSchedulingStrategy(hard={}, soft=None)
    with pytest.raises(ValueError, match="must be In"):
        NodeLabelSchedulingStrategy(hard={"zone": "a"})
    with pytest.raises(ValueError, match="at least one value"):
        In()
    with pytest.raises(ValueError, match="must be strings"):
        NotIn(1)


def test_start_rejects_bad_labels(tmp_path) -> None:
    harness = CliHarness(str(tmp_path))
    done = harness.ember("start", "--head", "--labels", '{"zone": 1}')
    assert done.returncode != 0 and "string value" in done.stderr
    done = harness.ember("start", "--head", "--labels", "[1]")
    assert done.returncode != 0 and "JSON object" in done.stderr
