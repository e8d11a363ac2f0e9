"""THE option table for tasks, actors and actor methods (CONVENTIONS #9).

Every option that ``@ray.remote(...)``, ``.options(...)`` and ``@ray.method(...)``
accept is one row of :data:`OPTIONS`: the types it takes, a value check, its default
and the kinds of call it applies to (``"task"``, ``"actor"``, ``"method"``).  Public
functions validate through this module and nowhere else; docs/options.md is the
user-facing version of the same table.

Names, defaults and error messages follow Ray's (tasks: 1 CPU, ``max_retries=3``,
``num_returns=1``; actors: 1 CPU to schedule and 0 while running unless a resource is
given, ``max_restarts=0``, ``max_task_retries=0``).

Pure: no I/O, no clocks.  Scheduling-strategy objects are recognised by duck typing
(an ``_ember_strategy`` attribute) so this module imports nothing from ember.util.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Optional

Kind = Literal["task", "actor", "method"]
TASK: Kind = "task"
ACTOR: Kind = "actor"
METHOD: Kind = "method"

Check = Callable[[Any], Optional[str]]  # returns an error message, or None if valid

# Resource amounts are fixed point with 4 decimals (ember.logic.resources.UNIT).
RESOURCE_PRECISION = 0.0001
DEFAULT_TASK_MAX_RETRIES = 3
DEFAULT_TASK_NUM_CPUS = 1.0
DEFAULT_ACTOR_PLACEMENT_NUM_CPUS = 1.0   # an actor with no resources given: to schedule
DEFAULT_ACTOR_RUNNING_NUM_CPUS = 0.0     # ... and while it lives
DEFAULT_ACTOR_SPECIFIED_NUM_CPUS = 1.0   # an actor given some resource but not num_cpus
ACCELERATOR_TYPE_RESOURCE_PREFIX = "accelerator_type:"
ACCELERATOR_TYPE_RESOURCE_AMOUNT = 0.001
SCHEDULING_STRATEGY_NAMES = ("DEFAULT", "SPREAD")
# Names that must be given through their own keyword, never inside ``resources``.
RESERVED_RESOURCE_NAMES = {
    "CPU": "num_cpus", "GPU": "num_gpus", "memory": "memory",
    "object_store_memory": "object_store_memory",
}
_NONE = type(None)
_KIND_WORDS = {TASK: "remote functions", ACTOR: "actors", METHOD: "actor methods"}


@dataclass(frozen=True)
class Option:
    """One row of the table."""

    types: tuple[type, ...]
    check: Optional[Check]
    default: Any
    applies_to: frozenset[str]
    # Where the default differs by kind (num_cpus: task 1, actor None).
    default_by_kind: Mapping[str, Any] = field(default_factory=dict)
    doc: str = ""

    def default_for(self, kind: Kind) -> Any:
        return self.default_by_kind.get(kind, self.default)

    def validate(self, keyword: str, value: Any) -> None:
        # bool is an int to Python, but True CPUs or retries is a mistake.
        is_bool_for_number = (isinstance(value, bool) and bool not in self.types
                              and (int in self.types or float in self.types))
        if not isinstance(value, self.types) or is_bool_for_number:
            names = ", ".join(t.__name__ for t in self.types)
            raise TypeError(
                f"The type of keyword '{keyword}' must be ({names}), "
                f"but received type {type(value)}"
            )
        if self.check is not None:
            error = self.check(value)
            if error:
                raise ValueError(error)


# ----------------------------------------------------------------------- value checks
def _counting(name: str, *, infinite: bool, minimum: int = 0) -> Check:
    def check(x: Any) -> Optional[str]:
        if x is None or x >= minimum or (infinite and x == -1):
            return None
        if infinite:
            return (f"The keyword '{name}' only accepts None, 0, -1 or a positive "
                    "integer, where -1 represents infinity.")
        if minimum > 0:
            return f"The keyword '{name}' only accepts None or an integer >= {minimum}."
        return f"The keyword '{name}' only accepts None, 0 or a positive integer."
    return check


def resource_quantity_error(name: str, quantity: float) -> Optional[str]:
    """Why ``quantity`` of resource ``name`` is invalid, or None."""
    if isinstance(quantity, float) and not math.isfinite(quantity):
        return f"The quantity of resource {name} must be a finite number, got {quantity}"
    if quantity < 0:
        return f"The quantity of resource {name} cannot be negative"
    if quantity != 0 and int(quantity / RESOURCE_PRECISION + 1e-9) == 0:
        return (f"The precision of the fractional quantity of resource {name} "
                f"cannot go beyond {RESOURCE_PRECISION}")
    if name in ("num_gpus", "GPU") and quantity > 1 and quantity != int(quantity):
        return (f"The quantity of resource {name} must be a whole number when it is "
                f"greater than 1 (fractions are for sharing one GPU), got {quantity}")
    return None


def _resource(name: str) -> Check:
    return lambda x: None if x is None else resource_quantity_error(name, x)


def _check_resources(resources: Optional[dict[Any, Any]]) -> Optional[str]:
    if resources is None:
        return None
    for key, quantity in resources.items():
        if not isinstance(key, str):
            return f"Resource names in 'resources' must be strings, got {key!r}"
        if key in RESERVED_RESOURCE_NAMES:
            return (f"Use the '{RESERVED_RESOURCE_NAMES[key]}' keyword instead of "
                    f"'{key}' in 'resources' keyword")
        if isinstance(quantity, bool) or not isinstance(quantity, (int, float)):
            return f"The quantity of resource {key} must be a number, got {quantity!r}"
        error = resource_quantity_error(key, quantity)
        if error:
            return error
    return None


def _issubclass_safe(obj: Any, cls: type) -> bool:
    try:
        return issubclass(obj, cls)
    except TypeError:
        return False


def _check_retry_exceptions(x: Any) -> Optional[str]:
    if x is None or isinstance(x, bool):
        return None
    if isinstance(x, (list, tuple)) and all(_issubclass_safe(e, BaseException) for e in x):
        return None
    return "retry_exceptions must be either a boolean or a list of exceptions"


def _check_num_returns(x: Any) -> Optional[str]:
    if x is None or x in ("streaming", "dynamic") or (isinstance(x, int) and x >= 0):
        return None
    return ("The keyword 'num_returns' only accepts None, a non-negative integer, "
            "'streaming' (for generators), or 'dynamic'.")


def _check_scheduling_strategy(x: Any) -> Optional[str]:
    if x is None or x in SCHEDULING_STRATEGY_NAMES:
        return None
    if not isinstance(x, str) and hasattr(x, "_ember_strategy"):
        return None
    return ("scheduling_strategy must be None, 'DEFAULT', 'SPREAD', or a strategy object "
            "(PlacementGroupSchedulingStrategy, NodeAffinitySchedulingStrategy, "
            f"NodeLabelSchedulingStrategy), got {x!r}")


def _check_lifetime(x: Any) -> Optional[str]:
    if x in (None, "detached", "non_detached"):
        return None
    return ("actor `lifetime` argument must be one of 'detached', 'non_detached' "
            "and 'None'.")


def _check_str_dict(name: str) -> Check:
    def check(x: Any) -> Optional[str]:
        if x is None:
            return None
        for k, v in x.items():
            if not isinstance(k, str) or not isinstance(v, str):
                return f"'{name}' must map strings to strings, got {k!r}: {v!r}"
        return None
    return check


def _check_fallback_strategy(x: Any) -> Optional[str]:
    if x is None:
        return None
    for entry in x:
        if not isinstance(entry, dict):
            return f"fallback_strategy must be a list of dicts, got an entry {entry!r}"
        unknown = set(entry) - {"label_selector"}
        if unknown:
            return f"fallback_strategy entries only accept 'label_selector', got {sorted(unknown)}"
        error = _check_str_dict("label_selector")(entry.get("label_selector"))
        if error:
            return error
    return None


def _check_concurrency_groups(x: Any) -> Optional[str]:
    if x is None:
        return None
    items = x.items() if isinstance(x, dict) else ((g, None) for g in x)
    for group, limit in items:
        if not isinstance(group, str) or not group:
            return f"concurrency group names must be non-empty strings, got {group!r}"
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 1):
            return f"concurrency group '{group}' needs an integer limit >= 1, got {limit!r}"
    return None


def _check_placement_group(x: Any) -> Optional[str]:
    if isinstance(x, str) and x != "default":
        return f"placement_group must be None, 'default' or a PlacementGroup, got {x!r}"
    return None


def _check_backpressure(x: Any) -> Optional[str]:
    if x == 0:
        return ("_generator_backpressure_num_objects=0 is not allowed. Use a value > 0, "
                "or -1 to disable backpressure.")
    if x is not None and x < -1:
        return "_generator_backpressure_num_objects must be -1 or a positive integer."
    return None


def _task_object_store_memory(x: Any) -> Optional[str]:
    return None if x is None else "Setting 'object_store_memory' is not implemented for tasks"


# ------------------------------------------------------------------------ the table
_T, _A, _M = frozenset({TASK}), frozenset({ACTOR}), frozenset({METHOD})
_TA, _AM = _T | _A, _A | _M
_TM, _TAM = _T | _M, _T | _A | _M
_NUM = (int, float, _NONE)
_INT = (int, _NONE)

OPTIONS: dict[str, Option] = {
    # --- resources (tasks and actors)
    "num_cpus": Option(_NUM, _resource("num_cpus"), None, _TA,
                       {TASK: DEFAULT_TASK_NUM_CPUS}, "CPUs to reserve"),
    "num_gpus": Option(_NUM, _resource("num_gpus"), None, _TA, doc="GPUs to reserve"),
    "memory": Option(_NUM, _resource("memory"), None, _TA, doc="heap memory in bytes"),
    "object_store_memory": Option(_INT, _counting("object_store_memory", infinite=False),
                                  None, _TA, doc="actors only; tasks reject it"),
    "resources": Option((dict, _NONE), _check_resources, None, _TA,
                        doc="custom resources: name -> amount"),
    "accelerator_type": Option((str, _NONE), None, None, _TA,
                               doc="require a node with this accelerator"),
    "label_selector": Option((dict, _NONE), _check_str_dict("label_selector"), None, _TA,
                             doc="node labels required (key -> value expression)"),
    "fallback_strategy": Option((list, _NONE), _check_fallback_strategy, None, _TA,
                                doc="soft label selectors tried in order"),
    "_labels": Option((dict, _NONE), _check_str_dict("_labels"), None, _TA,
                      doc="labels attached to the task/actor (private in Ray)"),
    # --- scheduling
    "scheduling_strategy": Option((object,), _check_scheduling_strategy, None, _TA,
                                  doc="None, 'DEFAULT', 'SPREAD' or a strategy object"),
    "placement_group": Option((object,), _check_placement_group, "default", _TA,
                              doc="deprecated: use scheduling_strategy"),
    "placement_group_bundle_index": Option((int,), None, -1, _TA,
                                           doc="deprecated: use scheduling_strategy"),
    "placement_group_capture_child_tasks": Option((bool, _NONE), None, None, _TA,
                                                  doc="deprecated: use scheduling_strategy"),
    # --- common
    "name": Option((str, _NONE), None, None, _TAM,
                   doc="task name / actor name (registers a named actor) / method name"),
    "runtime_env": Option((dict, _NONE), None, None, _TA, doc="runtime environment dict"),
    "enable_task_events": Option((bool,), None, True, _TAM,
                                 doc="record state events for the dashboard"),
    "_metadata": Option((dict, _NONE), None, None, _TAM,
                        doc="namespaced extra data; merged per namespace by .options()"),
    # --- tasks and methods
    "num_returns": Option((int, str, _NONE), _check_num_returns, 1, _TM,
                          doc="number of ObjectRefs returned, or 'streaming'"),
    "retry_exceptions": Option((bool, list, tuple, _NONE), _check_retry_exceptions, False, _TM,
                               {METHOD: None}, "retry on application errors too"),
    "_generator_backpressure_num_objects": Option(
        _INT, _check_backpressure, None, _TM,
        doc="streaming generators: unread objects before the generator pauses (-1: off)"),
    # --- tasks only
    "max_calls": Option(_INT, _counting("max_calls", infinite=False), 0, _T,
                        doc="tasks a worker runs before it exits (0: unlimited)"),
    "max_retries": Option(_INT, _counting("max_retries", infinite=True),
                          DEFAULT_TASK_MAX_RETRIES, _T,
                          doc="retries when the worker dies (-1: infinite)"),
    # --- actors only
    "max_restarts": Option(_INT, _counting("max_restarts", infinite=True), 0, _A,
                           doc="restarts after unexpected death (-1: infinite)"),
    "max_task_retries": Option(_INT, _counting("max_task_retries", infinite=True), 0, _AM,
                               {METHOD: None}, "retries of a call when the actor dies"),
    "max_concurrency": Option(_INT, _counting("max_concurrency", infinite=False, minimum=1),
                              None, _A, doc="concurrent calls (default 1; async: 1000)"),
    "max_pending_calls": Option(_INT, _counting("max_pending_calls", infinite=True), -1, _A,
                                doc="queued calls per caller before PendingCallsLimitExceeded"),
    "namespace": Option((str, _NONE), None, None, _A, doc="namespace of a named actor"),
    "lifetime": Option((str, _NONE), _check_lifetime, None, _A,
                       doc="None, 'detached' or 'non_detached'"),
    "get_if_exists": Option((bool,), None, False, _A,
                            doc="return the existing named actor instead of failing"),
    "concurrency_groups": Option((list, dict, _NONE), _check_concurrency_groups, None, _A,
                                 doc="group name -> max concurrency"),
    "allow_out_of_order_execution": Option((bool,), None, False, _A,
                                           doc="run calls as they arrive, not in order"),
    # --- methods only
    "concurrency_group": Option((str, _NONE), None, None, _M,
                                doc="the concurrency group this method runs in"),
}


def names_for(kind: Kind) -> list[str]:
    """Option names valid for ``kind``, in table order."""
    return [name for name, opt in OPTIONS.items() if kind in opt.applies_to]


def defaults(kind: Kind) -> dict[str, Any]:
    """Every option of ``kind`` with its default (a fresh dict)."""
    return {name: OPTIONS[name].default_for(kind) for name in names_for(kind)}


# Options where an explicit None differs from the default (None: no placement group;
# "default": the caller's group if it captures child tasks).
_NONE_IS_A_VALUE = frozenset({"placement_group"})


def with_defaults(opts: Mapping[str, Any], kind: Kind) -> dict[str, Any]:
    """``opts`` completed with the defaults of ``kind``.  A None value counts as "not
    given" (as in Ray), except for ``placement_group``."""
    full = defaults(kind)
    full.update({k: v for k, v in opts.items() if v is not None or k in _NONE_IS_A_VALUE})
    return full


# ---------------------------------------------------------------------- validation
def _validate_rows(opts: Mapping[str, Any], kind: Kind) -> None:
    valid = names_for(kind)
    for key, value in opts.items():
        opt = OPTIONS.get(key)
        if opt is None or kind not in opt.applies_to:
            raise ValueError(f"Invalid option keyword {key} for {_KIND_WORDS[kind]}. "
                             f"Valid ones are {valid}.")
        opt.validate(key, value)


def _check_placement_group_conflict(opts: Mapping[str, Any]) -> None:
    if (opts.get("placement_group", "default") not in ("default", None)
            and opts.get("scheduling_strategy") is not None):
        raise ValueError("Placement groups should be specified via the scheduling_strategy "
                         "option. The placement_group option is deprecated.")


def validate_task_options(opts: Mapping[str, Any], *, in_options: bool) -> None:
    """Check options of ``@remote`` on a function (``in_options=False``) or of
    ``f.options(...)`` (``in_options=True``).  Raises ValueError / TypeError."""
    _validate_rows(opts, TASK)
    if in_options and "max_calls" in opts:
        raise ValueError("Setting 'max_calls' is not supported in '.options()'.")
    object_store_memory_error = _task_object_store_memory(opts.get("object_store_memory"))
    if object_store_memory_error:
        raise ValueError(object_store_memory_error)
    _check_placement_group_conflict(opts)


def validate_actor_options(opts: Mapping[str, Any], *, in_options: bool) -> None:
    """Check options of ``@remote`` on a class or of ``A.options(...)``."""
    _validate_rows(opts, ACTOR)
    if in_options and "concurrency_groups" in opts:
        raise ValueError("Setting 'concurrency_groups' is not supported in '.options()'.")
    if opts.get("get_if_exists") and not opts.get("name"):
        raise ValueError("The actor name must be specified to use `get_if_exists`.")
    if opts.get("namespace") == "":
        raise ValueError('"" is not a valid namespace. Pass None to not specify a namespace.')
    if opts.get("name") == "":
        raise ValueError("Actor name cannot be an empty string.")
    _check_placement_group_conflict(opts)


def validate_method_options(opts: Mapping[str, Any], *, in_options: bool) -> None:
    """Check options of ``@ray.method(...)`` or of ``handle.method.options(...)``.
    ``in_options`` is accepted for symmetry; every method option may be overridden."""
    _validate_rows(opts, METHOD)


# ----------------------------------------------------------------------- resources
def _add(shape: dict[str, float], name: str, amount: Optional[float]) -> None:
    if amount:
        shape[name] = float(amount)


def _common_resources(opts: Mapping[str, Any]) -> dict[str, float]:
    """GPU, memory, custom resources and accelerator type (everything but CPU)."""
    shape: dict[str, float] = {}
    _add(shape, "GPU", opts.get("num_gpus"))
    memory = opts.get("memory")
    if memory:
        _add(shape, "memory", math.floor(memory))
    for name, amount in (opts.get("resources") or {}).items():
        _add(shape, name, amount)
    accelerator_type = opts.get("accelerator_type")
    if accelerator_type:
        shape[ACCELERATOR_TYPE_RESOURCE_PREFIX + accelerator_type] = (
            ACCELERATOR_TYPE_RESOURCE_AMOUNT)
    return shape


def resolve_task_resources(opts: Mapping[str, Any]) -> dict[str, float]:
    """The resource shape a task is scheduled with: ``{"CPU": 1.0}`` by default;
    ``memory`` (bytes, rounded down) as resource "memory"; custom resources merged;
    zero amounts left out."""
    num_cpus = opts.get("num_cpus")
    shape: dict[str, float] = {}
    _add(shape, "CPU", DEFAULT_TASK_NUM_CPUS if num_cpus is None else num_cpus)
    shape.update(_common_resources(opts))
    return shape


def actor_resources_specified(opts: Mapping[str, Any]) -> bool:
    """Whether the actor names a resource (then it holds them all for its lifetime)."""
    return any(opts.get(k) is not None
               for k in ("num_cpus", "num_gpus", "resources", "accelerator_type"))


def resolve_actor_resources(opts: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """``(placement_resources, running_resources)`` of an actor.

    With no resource named, an actor needs 1 CPU to be placed and holds 0 CPU while it
    lives (so any number of idle actors fit on a node with CPUs).  Once any of
    num_cpus/num_gpus/resources/accelerator_type is given, it holds what it names
    (num_cpus defaulting to 1) for its whole lifetime, and both shapes are equal.
    ``object_store_memory`` is not a scheduling resource here.
    """
    running = _common_resources(opts)
    if actor_resources_specified(opts):
        num_cpus = opts.get("num_cpus")
        _add(running, "CPU", DEFAULT_ACTOR_SPECIFIED_NUM_CPUS if num_cpus is None else num_cpus)
        return dict(running), running
    _add(running, "CPU", DEFAULT_ACTOR_RUNNING_NUM_CPUS)
    placement = dict(running)
    _add(placement, "CPU", placement.get("CPU", 0.0) + DEFAULT_ACTOR_PLACEMENT_NUM_CPUS)
    return placement, running


# ------------------------------------------------------------------------- merging
def merge_options(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Options after ``.options(**overrides)`` on something defined with ``base``.

    A shallow copy; later keys win, except ``_metadata``, which is merged one namespace
    at a time (``{ns: {k: v}}``) as Ray does.  Neither input is modified.
    """
    merged = {**base, **overrides}
    base_meta, new_meta = base.get("_metadata"), overrides.get("_metadata")
    if base_meta is not None and new_meta is not None:
        metadata = dict(base_meta)
        for namespace, config in new_meta.items():
            metadata[namespace] = {**metadata.get(namespace, {}), **config}
        merged["_metadata"] = metadata
    return merged


REMOTE_DECORATOR_USAGE = (
    "The @ray.remote decorator must be applied either with no arguments and no "
    "parentheses, for example '@ray.remote', or it must be applied using some of "
    f"the arguments in the list {list(OPTIONS)}, for example "
    "'@ray.remote(num_returns=2, resources={\"CustomResource\": 1})'."
)
