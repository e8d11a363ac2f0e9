"""The pure layers (ember.logic, ember.protocol) import no I/O, threads, clocks or processes."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "ember"
FORBIDDEN = {"asyncio", "socket", "subprocess", "threading", "os", "time", "mmap", "select", "signal",
             "multiprocessing", "random", "uuid", "psutil", "ember.shells", "ember.api", "ember.cli"}
PURE = sorted(p for sub in ("logic", "protocol") for p in (ROOT / sub).rglob("*.py"))


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


@pytest.mark.parametrize("path", PURE, ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_module_imports_nothing_impure(path):
    bad = [name for name in _imports(path) if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)]
    assert not bad, f"{path.name} imports {bad}"
