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


# --- shells: one package per process, and no circles anywhere -------------------------------------------------
# Each shell package runs in one kind of process.  wire/ and shared/ run in all of them; a process package
# imports neither another process package nor the public layer above it.
PROCESS_PACKAGES = ("control", "node", "worker", "client")
PUBLIC = ("ember.api", "ember.lifecycle", "ember.cli", "ember.actor", "ember.remote_function")
# The zygote pre-imports the worker's entry point: the processes it forks become workers.
ALLOWED = {("ember.shells.node.zygote", "ember.shells.worker.worker_main")}


def _module_name(path):
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _all_imports(path):
    """Absolute module names imported anywhere in the file (function-level imports too)."""
    mod = _module_name(path)
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.split(".")
                base = base if path.name == "__init__.py" else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                src = ".".join(base + ([node.module] if node.module else []))
            else:
                src = node.module or ""
            yield src
            yield from (f"{src}.{alias.name}" for alias in node.names)


SHELLS = sorted((ROOT / "shells").rglob("*.py"))


@pytest.mark.parametrize("path", SHELLS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shells_do_not_reach_into_other_processes(path):
    mod = _module_name(path)
    parts = mod.split(".")
    own = parts[2] if len(parts) > 2 else ""
    bad = []
    for name in _all_imports(path):
        if any(name == p or name.startswith(p + ".") for p in PUBLIC):
            bad.append(name)
        for other in PROCESS_PACKAGES:
            prefix = f"ember.shells.{other}"
            if other != own and (name == prefix or name.startswith(prefix + ".")):
                if not any(mod == a and b.startswith(name) for a, b in ALLOWED):
                    bad.append(name)
    if own not in PROCESS_PACKAGES:  # wire/ and shared/ serve every process
        bad += [n for n in _all_imports(path) if any(n.startswith(f"ember.shells.{p}") for p in PROCESS_PACKAGES)]
    assert not bad, f"{mod} imports across processes or upwards: {sorted(set(bad))}"


def test_no_import_circles():
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}

    def resolve(name):
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges = {m: {r for n in _all_imports(p) if (r := resolve(n)) and r != m and not modules[r].name == "__init__.py"}
             for m, p in modules.items()}
    index, low, stack, on_stack, circles, counter = {}, {}, [], set(), [], [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in sorted(modules):
        if v not in index:
            visit(v)
    assert not circles, f"modules that import each other in a circle: {circles}"
