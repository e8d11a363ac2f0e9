"""The cluster config: YAML in Ray's cluster-launcher shape plus ember's cost fields, validated on load.

    cluster_name: demo
    max_workers: 10                 # worker nodes, head excluded
    upscaling_speed: 1.0
    idle_timeout_minutes: 5
    provider: {type: local}
    auth: {ssh_user: ubuntu}
    available_node_types:
      cpu4:
        resources: {CPU: 4}
        min_workers: 0
        max_workers: 4
        node_config: {}
        cost_per_hour: 0.20
        prepaid: {count: 1, until: 2027-01-01}
    head_node_type: cpu4
    setup_commands: []
    head_start_ember_commands: []
    worker_start_ember_commands: []
    budget: {max_cost_per_hour: 1.0, total: 100, period: month}

Errors raise ClusterConfigError naming the file, the line (from the YAML node marks) and the field.
Parsing text is pure; reading the file is the caller's job.
"""
from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field

import yaml

from .model import Budget, NodeType, Prepaid

PERIODS = {"hour": 1.0, "day": 24.0, "week": 168.0, "month": 720.0, "year": 8760.0}
COMMAND_LISTS = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
                 "head_start_ember_commands", "worker_start_ember_commands", "head_stop_ember_commands",
                 "worker_stop_ember_commands")
TOP_KEYS = {"cluster_name", "max_workers", "upscaling_speed", "idle_timeout_minutes", "provider", "auth",
            "available_node_types", "head_node_type", "file_mounts", "budget", "docker", "min_workers",
            *COMMAND_LISTS}
TYPE_KEYS = {"resources", "min_workers", "max_workers", "node_config", "cost_per_hour", "prepaid", "labels"}


class ClusterConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ClusterConfig:
    cluster_name: str
    provider: dict
    node_types: tuple                      # NodeType, ... (sorted by name)
    head_node_type: str
    max_workers: int = 2
    upscaling_speed: float = 1.0
    idle_timeout_minutes: float = 5.0
    auth: dict = field(default_factory=dict)
    node_configs: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    budget: Budget = Budget()
    commands: dict = field(default_factory=dict)   # name -> [str]
    file_mounts: dict = field(default_factory=dict)

    def node_type(self, name: str) -> NodeType:
        for t in self.node_types:
            if t.name == name:
                return t
        raise KeyError(name)


class _Doc:
    """A YAML document as plain values, with the line of every field (1-based) by dotted path."""

    def __init__(self, text: str, source: str) -> None:
        self.source, self.lines = source, {}
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            raise ClusterConfigError(f"{source}{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
        if node is None:
            raise ClusterConfigError(f"{source}: the cluster config is empty")
        self._mark(node, "")
        self.value = yaml.safe_load(text)

    def _mark(self, node, path: str, line: int | None = None) -> None:
        self.lines[path] = line or node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:    # a field's line is its key's line
                self._mark(v, f"{path}.{k.value}" if path else str(k.value), k.start_mark.line + 1)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                self._mark(v, f"{path}[{i}]")

    def error(self, path: str, msg: str) -> ClusterConfigError:
        probe = path
        while probe and probe not in self.lines:
            probe = probe.rpartition(".")[0]
        line = f" line {self.lines[probe]}" if probe in self.lines else ""
        return ClusterConfigError(f"{self.source}{line}: {path}: {msg}")


def _number(doc, path, v, *, minimum=0.0, integer=False, positive=False):
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if not ok or isinstance(v, bool) or v < minimum or (positive and v <= 0):
        kind = "an integer" if integer else "a number"
        bound = f"> {minimum}" if positive else f">= {minimum}"
        raise doc.error(path, f"expected {kind} {bound}, got {v!r}")
    return v if integer else float(v)


def _mapping(doc, path, v, required=False):
    if v is None and not required:
        return {}
    if not isinstance(v, dict):
        raise doc.error(path, f"expected a mapping, got {type(v).__name__} {v!r}")
    return v


def _unknown(doc, path, d, allowed):
    extra = sorted(str(k) for k in d if k not in allowed)
    if extra:
        raise doc.error(f"{path}.{extra[0]}" if path else extra[0],
                        f"unknown field (expected one of: {', '.join(sorted(allowed))})")


def _timestamp(doc, path, v) -> float:
    if isinstance(v, _dt.datetime):
        return (v if v.tzinfo else v.replace(tzinfo=_dt.timezone.utc)).timestamp()
    if isinstance(v, _dt.date):
        return _dt.datetime(v.year, v.month, v.day, tzinfo=_dt.timezone.utc).timestamp()
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    raise doc.error(path, f"expected a date (2027-01-01), a datetime or a POSIX timestamp, got {v!r}")


def _period(doc, path, v) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
        return float(v)
    if isinstance(v, str):
        if v in PERIODS:
            return PERIODS[v]
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([hdw])\s*", v)
        if m:
            return float(m.group(1)) * {"h": 1, "d": 24, "w": 168}[m.group(2)]
    raise doc.error(path, f"expected hours (a number), one of {', '.join(PERIODS)}, or like '30d', got {v!r}")


def _node_type(doc, name, d) -> tuple:
    p = f"available_node_types.{name}"
    d = _mapping(doc, p, d, required=True)
    _unknown(doc, p, d, TYPE_KEYS)
    res = _mapping(doc, f"{p}.resources", d.get("resources"))
    for r, amount in res.items():
        _number(doc, f"{p}.resources.{r}", amount)
    lo = _number(doc, f"{p}.min_workers", d.get("min_workers", 0), integer=True)
    hi = _number(doc, f"{p}.max_workers", d["max_workers"], integer=True) if "max_workers" in d else 10**9
    if hi < lo:
        raise doc.error(f"{p}.max_workers", f"max_workers ({hi}) is below min_workers ({lo})")
    cost = _number(doc, f"{p}.cost_per_hour", d.get("cost_per_hour", 0.0))
    prepaid = None
    if d.get("prepaid") is not None:
        pp = _mapping(doc, f"{p}.prepaid", d["prepaid"])
        _unknown(doc, f"{p}.prepaid", pp, {"count", "until"})
        if "count" not in pp or "until" not in pp:
            raise doc.error(f"{p}.prepaid", "needs both count and until")
        prepaid = Prepaid(_number(doc, f"{p}.prepaid.count", pp["count"], integer=True),
                          _timestamp(doc, f"{p}.prepaid.until", pp["until"]))
    t = NodeType(str(name), {str(k): float(v) for k, v in res.items()}, lo, hi, cost, prepaid)
    return t, _mapping(doc, f"{p}.node_config", d.get("node_config")), \
        {str(k): str(v) for k, v in _mapping(doc, f"{p}.labels", d.get("labels")).items()}


def _budget(doc, v) -> Budget:
    b = _mapping(doc, "budget", v)
    _unknown(doc, "budget", b, {"max_cost_per_hour", "total", "period"})
    rate = _number(doc, "budget.max_cost_per_hour", b["max_cost_per_hour"]) \
        if b.get("max_cost_per_hour") is not None else None
    total = _number(doc, "budget.total", b["total"]) if b.get("total") is not None else None
    if total is not None and b.get("period") is None:
        raise doc.error("budget.total", "a total needs a period (hours, day, week, month or like '30d')")
    period = _period(doc, "budget.period", b["period"]) if b.get("period") is not None else None
    return Budget(rate, total, period)


def _commands(doc, top) -> dict:
    out = {}
    for name in COMMAND_LISTS:
        v = top.get(name) or []
        if not isinstance(v, list) or not all(isinstance(c, str) for c in v):
            raise doc.error(name, f"expected a list of command strings, got {v!r}")
        out[name] = list(v)
    return out


def _ssh_provider(doc, provider: dict) -> None:
    _unknown(doc, "provider", provider, {"type", "head_ip", "worker_ips", "ssh_port"})
    head = provider.get("head_ip")
    if not isinstance(head, str) or not head:
        raise doc.error("provider.head_ip" if "head_ip" in provider else "provider",
                        "the ssh provider needs head_ip: the head machine's address")
    ips = provider.get("worker_ips", [])
    if not isinstance(ips, list) or not all(isinstance(ip, str) and ip for ip in ips):
        raise doc.error("provider.worker_ips", f"expected a list of addresses, got {ips!r}")
    if head in ips:
        raise doc.error("provider.worker_ips", f"{head} is the head_ip; list only the worker machines")
    if len(set(ips)) != len(ips):
        raise doc.error("provider.worker_ips", "an address is listed twice")
    if "ssh_port" in provider:
        _number(doc, "provider.ssh_port", provider["ssh_port"], integer=True, positive=True)


def parse_cluster_config(text: str, source: str = "<cluster config>") -> ClusterConfig:
    doc = _Doc(text, source)
    top = _mapping(doc, "", doc.value, required=True) if isinstance(doc.value, dict) else None
    if top is None:
        raise ClusterConfigError(f"{source} line 1: the cluster config must be a mapping")
    _unknown(doc, "", top, TOP_KEYS)
    for key in ("cluster_name", "provider", "available_node_types", "head_node_type"):
        if key not in top:
            raise ClusterConfigError(f"{source}: {key}: required field is missing")
    if not isinstance(top["cluster_name"], str) or not top["cluster_name"]:
        raise doc.error("cluster_name", f"expected a non-empty string, got {top['cluster_name']!r}")
    provider = _mapping(doc, "provider", top["provider"], required=True)
    if not isinstance(provider.get("type"), str):
        raise doc.error("provider.type" if "type" in provider else "provider", "needs a type (local, ssh)")
    if provider["type"] == "ssh":
        _ssh_provider(doc, provider)
    types = _mapping(doc, "available_node_types", top["available_node_types"], required=True)
    if not types:
        raise doc.error("available_node_types", "needs at least one node type")
    parsed = [_node_type(doc, name, types[name]) for name in sorted(types, key=str)]
    head = top["head_node_type"]
    if head not in types:
        raise doc.error("head_node_type", f"{head!r} is not one of available_node_types ({', '.join(map(str, types))})")
    return ClusterConfig(
        cluster_name=top["cluster_name"], provider=provider, node_types=tuple(t for t, _, _ in parsed),
        head_node_type=str(head),
        max_workers=_number(doc, "max_workers", top.get("max_workers", 2), integer=True),
        upscaling_speed=_number(doc, "upscaling_speed", top.get("upscaling_speed", 1.0), positive=True),
        idle_timeout_minutes=_number(doc, "idle_timeout_minutes", top.get("idle_timeout_minutes", 5.0)),
        auth=_mapping(doc, "auth", top.get("auth")),
        node_configs={t.name: nc for t, nc, _ in parsed}, labels={t.name: lb for t, _, lb in parsed},
        budget=_budget(doc, top.get("budget")), commands=_commands(doc, top),
        file_mounts=_mapping(doc, "file_mounts", top.get("file_mounts")))
