"""The simulator drives ember.logic only: no shells, no I/O, no threads, no clock (the reporting
entry point ``__main__`` reads the wall clock for events/s, nothing else)."""
import ast
import pathlib

import pytest

SIM = pathlib.Path(__file__).resolve().parents[2] / "ember" / "sim"
FORBIDDEN = ("asyncio", "socket", "subprocess", "threading", "os", "time", "mmap", "select", "signal",
             "multiprocessing", "uuid", "psutil", "ember.shells", "ember.api", "ember.cli", "ember.lifecycle")


@pytest.mark.parametrize("path", sorted(SIM.glob("*.py")), ids=lambda p: p.name)
def test_sim_imports_only_logic(path):
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    allowed = {"time"} if path.name == "__main__.py" else set()
    bad = [n for n in names if any(n == f or n.startswith(f + ".") for f in FORBIDDEN) and n not in allowed]
    assert not bad, f"{path.name} imports {bad}"
