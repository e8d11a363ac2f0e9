"""The cluster config: Ray's launcher shape plus cost fields, errors naming the line and field."""
import pytest

from ember.logic.autoscaler.config import ClusterConfigError, parse_cluster_config

GOOD = """\
cluster_name: demo
max_workers: 6
upscaling_speed: 2
idle_timeout_minutes: 0.05
provider:
  type: local
auth: {ssh_user: me}
available_node_types:
  head:
    resources: {CPU: 1}
    max_workers: 0
  cpu4:
    resources: {CPU: 4, memory: 1000000}
    min_workers: 1
    max_workers: 4
    node_config: {}
    cost_per_hour: 0.25
    prepaid: {count: 1, until: 2027-01-01}
head_node_type: head
setup_commands: ["echo hi"]
worker_start_ember_commands: ["ember start --address=$EMBER_HEAD_IP:6379"]
budget: {max_cost_per_hour: 1.0, total: 100, period: month}
"""


def test_a_good_config_loads():
    c = parse_cluster_config(GOOD, "demo.yaml")
    assert c.cluster_name == "demo" and c.max_workers == 6 and c.upscaling_speed == 2.0
    assert c.idle_timeout_minutes == 0.05 and c.provider == {"type": "local"}
    cpu = c.node_type("cpu4")
    assert cpu.resources == {"CPU": 4.0, "memory": 1000000.0} and (cpu.min_workers, cpu.max_workers) == (1, 4)
    assert cpu.cost_per_hour == 0.25 and cpu.prepaid.count == 1 and cpu.prepaid.until == 1798761600.0
    assert c.budget.max_cost_per_hour == 1.0 and c.budget.total == 100.0 and c.budget.period_hours == 720.0
    assert c.commands["setup_commands"] == ["echo hi"] and c.commands["head_start_ember_commands"] == []


@pytest.mark.parametrize("old,new,expect", [
    ("min_workers: 1", "min_workers: -1", "demo.yaml line 14: available_node_types.cpu4.min_workers: expected an integer >= 0"),
    ("max_workers: 4", "max_workers: 0", "line 15: available_node_types.cpu4.max_workers: max_workers (0) is below min_workers (1)"),
    ("cost_per_hour: 0.25", "cost_per_hour: cheap", "line 17: available_node_types.cpu4.cost_per_hour: expected a number"),
    ("until: 2027-01-01", "until: soon", "line 18: available_node_types.cpu4.prepaid.until: expected a date"),
    ("head_node_type: head", "head_node_type: gpu", "line 19: head_node_type: 'gpu' is not one of"),
    ("period: month", "period: fortnight", "line 22: budget.period: expected hours"),
    ("cost_per_hour: 0.25", "cost_per_hour: 0.25\n    colour: red", "line 18: available_node_types.cpu4.colour: unknown field"),
    ("type: local", "kind: local", "line 5: provider: needs a type"),
    ("upscaling_speed: 2", "upscaling_speed: 0", "line 3: upscaling_speed: expected a number > 0"),
    ("CPU: 4,", "CPU: -4,", "line 13: available_node_types.cpu4.resources.CPU: expected a number >= 0"),
    ("setup_commands: [\"echo hi\"]", "setup_commands: echo hi", "line 20: setup_commands: expected a list"),
    ("total: 100, period: month", "total: 100", "budget.total: a total needs a period"),
])
def test_errors_name_the_line_and_field(old, new, expect):
    assert old in GOOD
    with pytest.raises(ClusterConfigError) as e:
        parse_cluster_config(GOOD.replace(old, new), "demo.yaml")
    assert expect in str(e.value)


def test_missing_fields_and_bad_yaml():
    with pytest.raises(ClusterConfigError, match="cluster_name: required field is missing"):
        parse_cluster_config(GOOD.replace("cluster_name: demo\n", ""), "demo.yaml")
    with pytest.raises(ClusterConfigError, match="demo.yaml line 3: not valid YAML"):
        parse_cluster_config("a: 1\nb: [\nc: {", "demo.yaml")
    with pytest.raises(ClusterConfigError, match="empty"):
        parse_cluster_config("", "demo.yaml")
