"""ember's public names and signatures against Ray's (trio's test_exports idea).

tests/data/ray_public_api.json lists what Ray exposes and what ember promises
(status "required").  Every required name must exist under ``ember`` (``ray.X`` is
``ember.X``), every required member must exist on its class, and every listed
function that exists must take Ray's parameters with Ray's kinds and defaults.

Names the lead has not landed yet are in PENDING: their checks are
``xfail(strict=False)`` until they land; delete them from PENDING as they do.
``ember.exceptions`` is never pending.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

API = json.loads((Path(__file__).parent / "data" / "ray_public_api.json").read_text())
STATUSES = {"required", "planned", "not_planned"}
_MISSING = object()

# Ray paths whose ember counterpart is not written yet (lead / other owners).
PENDING = frozenset({
})


@functools.lru_cache(maxsize=1)
def _top_level_names_after_plain_import() -> frozenset[str]:
    """Names ``ember`` has right after ``import ember`` in a fresh interpreter, so that
    submodules imported by other tests do not count (``ray.util`` must work after
    ``import ember as ray`` alone)."""
    code = "import ember; print(chr(10).join(dir(ember)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    return frozenset(out.stdout.split())


def _owner_object(owner: str) -> Any:
    if owner == "ray":
        return importlib.import_module("ember")
    if owner in API["modules"]:  # a module users import: ``from ray.util import X``
        try:
            return importlib.import_module("ember" + owner[3:])
        except ImportError:
            return _MISSING
    return resolve(owner)  # a class, e.g. ray.util.ActorPool


def resolve(ray_path: str) -> Any:
    """The ember object for a Ray dotted path (``ray.util.ActorPool`` ->
    ``ember.util.ActorPool``), or _MISSING.  ``ray.X`` must be there after a plain
    ``import ember``; ``ray.mod.X`` may import ``ember.mod`` first."""
    owner, name = ray_path.rsplit(".", 1)
    if owner == "ray" and name not in _top_level_names_after_plain_import():
        return _MISSING
    obj = _owner_object(owner)
    return _MISSING if obj is _MISSING else getattr(obj, name, _MISSING)


def _required_paths() -> list[str]:
    paths = [f"{mod}.{e['name']}" for mod, entries in API["modules"].items()
             for e in entries if e["status"] == "required"]
    paths += [f"{owner}.{e['name']}" for owner, entries in API["members"].items()
              for e in entries if e["status"] == "required"]
    return paths


def _planned_paths() -> list[str]:
    return [f"{mod}.{e['name']}" for mod, entries in API["modules"].items()
            for e in entries if e["status"] == "planned"]


def _param(path: str) -> Any:
    marks = [pytest.mark.xfail(strict=False, reason="not landed yet")] if path in PENDING else []
    return pytest.param(path, marks=marks, id=path)


# ----------------------------------------------------------------- the data file
def test_api_file_is_well_formed() -> None:
    for section in ("modules", "members"):
        for owner, entries in API[section].items():
            assert owner == "ray" or owner.startswith("ray."), owner
            names = [e["name"] for e in entries]
            assert len(names) == len(set(names)), f"duplicate names under {owner}"
            for e in entries:
                assert e["status"] in STATUSES, (owner, e)
    listed = set(_required_paths()) | set(_planned_paths())
    for path, spec in API["signatures"].items():
        assert path in listed, path
        kinds = {p["kind"] for p in spec["params"]}
        assert kinds <= set(_KINDS), (path, kinds)


def test_pending_names_are_real_required_names() -> None:
    """PENDING must not hide typos or names that are not required."""
    assert PENDING <= set(_required_paths())
    assert not any(p.startswith("ray.exceptions.") for p in PENDING)


# ------------------------------------------------------------------------- names
@pytest.mark.parametrize("path", [_param(p) for p in _required_paths()])
def test_required_name_exists(path: str) -> None:
    assert resolve(path) is not _MISSING, f"ember lacks {path.replace('ray', 'ember', 1)}"


def test_ember_exceptions_match_ray_exceptions_exactly_where_required() -> None:
    import ember.exceptions as ex

    for entry in API["modules"]["ray.exceptions"]:
        obj = getattr(ex, entry["name"])
        if entry["name"] != "RAY_EXCEPTION_TYPES":
            assert isinstance(obj, type) and issubclass(obj, ex.RayError), entry["name"]


# -------------------------------------------------------------------- signatures
_KINDS = {
    "positional_only": inspect.Parameter.POSITIONAL_ONLY,
    "positional_or_keyword": inspect.Parameter.POSITIONAL_OR_KEYWORD,
    "var_positional": inspect.Parameter.VAR_POSITIONAL,
    "keyword_only": inspect.Parameter.KEYWORD_ONLY,
    "var_keyword": inspect.Parameter.VAR_KEYWORD,
}
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def signature_problems(func: Any, ray_params: list[dict[str, Any]]) -> list[str]:
    """Differences between ``func``'s signature and Ray's; empty when compatible.

    Ray's named parameters must be present with the same kind and default (those
    marked optional may be missing); Ray's positional parameters must sit at the same
    positions; ``*args``/``**kwargs`` must exist where Ray has them; parameters that
    ember adds must have defaults and must come after Ray's positional ones.
    """
    params = inspect.signature(func).parameters
    ember_positional = [p.name for p in params.values() if p.kind in _POSITIONAL]
    ray_names = {rp["name"] for rp in ray_params if _KINDS[rp["kind"]] not in _VARIADIC}
    problems: list[str] = []
    ray_position = 0
    for rp in ray_params:
        kind = _KINDS[rp["kind"]]
        if kind in _VARIADIC:
            if not any(p.kind is kind for p in params.values()):
                problems.append(f"missing {'*' if kind is _VARIADIC[0] else '**'}{rp['name']}")
            continue
        p = params.get(rp["name"])
        if kind in _POSITIONAL:
            ray_position += 1
        if p is None:
            if not rp.get("optional"):
                problems.append(f"missing parameter {rp['name']!r}")
            continue
        if p.kind is not kind:
            problems.append(f"{rp['name']!r} is {p.kind.name}, Ray has {kind.name}")
        if kind in _POSITIONAL and ember_positional.index(p.name) != ray_position - 1:
            problems.append(f"{rp['name']!r} is not at Ray's position {ray_position - 1}")
        if "default" in rp:
            if p.default is inspect.Parameter.empty:
                problems.append(f"{rp['name']!r} has no default, Ray's is {rp['default']!r}")
            elif p.default != rp["default"] and p.default not in rp.get("also_accepted", []):
                problems.append(f"{rp['name']!r} defaults to {p.default!r}, Ray's is "
                                f"{rp['default']!r}")
    for p in params.values():
        if p.name in ray_names or p.kind in _VARIADIC:
            continue
        if p.default is inspect.Parameter.empty:
            problems.append(f"extra parameter {p.name!r} without a default")
        if p.kind in _POSITIONAL and ember_positional.index(p.name) < ray_position:
            problems.append(f"extra positional parameter {p.name!r} before Ray's")
    return problems


def _signature_param(path: str) -> Any:
    pending = path in PENDING or path.rsplit(".", 1)[0] in PENDING
    marks = [pytest.mark.xfail(strict=False, reason="not landed yet")] if pending else []
    return pytest.param(path, marks=marks, id=path)


@pytest.mark.parametrize("path", [_signature_param(p) for p in API["signatures"]])
def test_signature_matches_ray(path: str) -> None:
    func = resolve(path)
    if func is _MISSING and path in _planned_paths():
        pytest.skip(f"{path} is planned, not implemented yet")
    assert func is not _MISSING, f"ember lacks {path.replace('ray', 'ember', 1)}"
    problems = signature_problems(func, API["signatures"][path]["params"])
    assert problems == [], f"{path}: " + "; ".join(problems)


# ------------------------------------------------- the checker itself, on samples
def _ray_get_like(object_refs: Any, *, timeout: Any = None) -> None: ...
def _wrong_default(object_refs: Any, *, timeout: Any = 5) -> None: ...
def _positional_timeout(object_refs: Any, timeout: Any = None) -> None: ...
def _renamed(refs: Any, *, timeout: Any = None) -> None: ...
def _extra_required(object_refs: Any, *, timeout: Any = None, mode: Any) -> None: ...
def _extra_optional(object_refs: Any, *, timeout: Any = None, _fast: bool = True) -> None: ...


@pytest.mark.parametrize("func,expected", [
    (_ray_get_like, []),
    (_extra_optional, []),
    (_wrong_default, ["'timeout' defaults to 5, Ray's is None"]),
    (_positional_timeout, ["'timeout' is POSITIONAL_OR_KEYWORD, Ray has KEYWORD_ONLY"]),
    (_renamed, ["missing parameter 'object_refs'", "extra parameter 'refs' without a default",
                "extra positional parameter 'refs' before Ray's"]),
    (_extra_required, ["extra parameter 'mode' without a default"]),
])
def test_signature_checker(func: Any, expected: list[str]) -> None:
    assert signature_problems(func, API["signatures"]["ray.get"]["params"]) == expected


def test_signature_checker_accepts_older_ray_defaults() -> None:
    def init(address: Any = None, *, logging_level: Any = 20, **kwargs: Any) -> None: ...

    params = [p for p in API["signatures"]["ray.init"]["params"]
              if p["name"] in ("address", "logging_level", "kwargs")]
    assert signature_problems(init, params) == []


def test_signature_checker_on_variadics_and_optional() -> None:
    def remote(*args: Any, **kwargs: Any) -> None: ...
    def remote_no_kwargs(*args: Any) -> None: ...
    def put(value: Any) -> None: ...  # _owner is optional

    assert signature_problems(remote, API["signatures"]["ray.remote"]["params"]) == []
    assert signature_problems(remote_no_kwargs, API["signatures"]["ray.remote"]["params"]) \
        == ["missing **kwargs"]
    assert signature_problems(put, API["signatures"]["ray.put"]["params"]) == []
