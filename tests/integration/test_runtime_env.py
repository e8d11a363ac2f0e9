"""Runtime environments of tasks and actors: env_vars, working_dir, py_modules, pip, pooled workers."""
from __future__ import annotations

import os
import time

import pytest

import ember
from ember.exceptions import RuntimeEnvSetupError
from ember.runtime_env import RuntimeEnv
from jobs_helpers import build_wheel

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def cluster():
    if ember.is_initialized():
        ember.shutdown()
    ember.init(num_cpus=2)
    yield
    ember.shutdown()


@ember.remote
def probe():
    import os
    return {"FOO": os.environ.get("FOO"), "cwd": os.getcwd(), "pid": os.getpid()}


def test_env_vars_per_task_and_workers_pooled_per_env(cluster):
    plain = ember.get(probe.remote())
    assert plain["FOO"] is None
    a = [ember.get(probe.options(runtime_env={"env_vars": {"FOO": "a"}}).remote()) for _ in range(3)]
    assert {r["FOO"] for r in a} == {"a"}
    assert len({r["pid"] for r in a}) == 1  # a warm worker of that env is reused
    b = ember.get(probe.options(runtime_env=RuntimeEnv(env_vars={"FOO": "b"})).remote())
    assert b["FOO"] == "b" and b["pid"] not in {r["pid"] for r in a}
    assert ember.get(probe.remote())["FOO"] is None  # the default pool is untouched


def test_working_dir_is_cwd_and_importable_and_excludes_apply(cluster, tmp_path):
    (tmp_path / "wdmod_tasks.py").write_text("VALUE = 'from-working-dir'\n")
    (tmp_path / "secret.txt").write_text("x")

    @ember.remote
    def use():
        import os
        import wdmod_tasks
        return wdmod_tasks.VALUE, os.path.exists("wdmod_tasks.py"), os.path.exists("secret.txt")

    env = {"working_dir": str(tmp_path), "excludes": ["secret.txt"]}
    assert ember.get(use.options(runtime_env=env).remote()) == ("from-working-dir", True, False)


def test_actor_runtime_env_and_nested_tasks_inherit(cluster, tmp_path):
    @ember.remote
    class Holder:
        def read(self):
            import os
            return os.environ.get("FOO"), ember.get(probe.remote())["FOO"]

    h = Holder.options(runtime_env={"env_vars": {"FOO": "actor"}}).remote()
    assert ember.get(h.read.remote()) == ("actor", "actor")


def test_py_modules(cluster, tmp_path):
    mod = tmp_path / "pym"
    mod.mkdir()
    (mod / "pym_helper.py").write_text("def twice(x):\n    return 2 * x\n")

    @ember.remote
    def use():
        import pym_helper
        return pym_helper.twice(21)

    assert ember.get(use.options(runtime_env={"py_modules": [str(mod)]}).remote()) == 42


def test_pip_env_built_once_then_warm(cluster, tmp_path):
    name = f"embertaskpkg{os.getpid()}"
    wheel = build_wheel(str(tmp_path), name, "2.0", "X = 'pip-task'\n")

    @ember.remote
    def use():
        import importlib
        return importlib.import_module(name).X

    env = {"pip": [wheel]}
    t0 = time.perf_counter()
    assert ember.get(use.options(runtime_env=env).remote()) == "pip-task"
    first_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    assert ember.get(use.options(runtime_env=env).remote()) == "pip-task"
    warm_s = time.perf_counter() - t1
    print(f"pip env: first task {first_s * 1000:.0f} ms, warm {warm_s * 1000:.1f} ms")
    with pytest.raises(ModuleNotFoundError):
        ember.get(use.remote())


def test_failed_setup_raises_runtime_env_setup_error_and_cluster_goes_on(cluster, tmp_path):
    bad = {"pip": [str(tmp_path / "missing-1.0-py3-none-any.whl")]}
    ref = probe.options(runtime_env=bad).remote()
    with pytest.raises(RuntimeEnvSetupError, match="pip: installing"):
        ember.get(ref, timeout=120)
    assert ember.get(probe.remote())["FOO"] is None
    with pytest.raises(ValueError, match="does not exist"):
        probe.options(runtime_env={"working_dir": str(tmp_path / "nope")}).remote()
    with pytest.raises(ValueError, match="not supported"):
        probe.options(runtime_env={"conda": "env"}).remote()


def test_init_runtime_env_applies_to_every_task(no_cluster, tmp_path):
    (tmp_path / "initwd_mod.py").write_text("V = 3\n")
    ember.init(num_cpus=1, runtime_env={"env_vars": {"FOO": "job"}, "working_dir": str(tmp_path)})

    @ember.remote
    def use():
        import os
        import initwd_mod
        return os.environ.get("FOO"), initwd_mod.V

    assert ember.get(use.remote()) == ("job", 3)
    # a task's own env_vars merge over the job's, key by key
    assert ember.get(use.options(runtime_env={"env_vars": {"FOO": "task"}}).remote()) == ("task", 3)
    ember.shutdown()


def test_actor_with_a_failing_env_dies_with_runtime_env_setup_error(cluster, tmp_path):
    @ember.remote
    class Never:
        def ping(self):
            return 1

    bad = Never.options(runtime_env={"pip": [str(tmp_path / "absent-1.0-py3-none-any.whl")]}).remote()
    with pytest.raises(RuntimeEnvSetupError, match="pip: installing"):
        ember.get(bad.ping.remote(), timeout=120)
    ok = Never.remote()
    assert ember.get(ok.ping.remote()) == 1
