"""Actor failures with real processes: SIGKILL and restarts, retries, kill, exit_actor,
out of scope, owner death, and the end of a driver's job."""
import gc
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

import ember
from ember import lifecycle
from ember import exceptions as exc

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def actor_cluster():
    if ember.is_initialized():
        ember.shutdown()
    ctx = ember.init(num_cpus=2)
    yield ctx
    ember.shutdown()


@ember.remote
class Stateful:
    def __init__(self):
        self.n = 0

    def inc(self):
        self.n += 1
        return self.n

    def pid(self):
        return os.getpid()

    def wait_then(self, seconds, value):
        time.sleep(seconds)
        return value

    def bye(self):
        ember.actor.exit_actor()

    def restarted(self):
        return ember.get_runtime_context().was_current_actor_reconstructed


def _wait_gone(pid, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def _call_until_ok(method, timeout_s=30.0):
    """A call sent before this caller heard of a worker's death is lost with it (as in
    Ray, without max_task_retries): call again until the restarted actor answers."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ember.get(method.remote(), timeout=timeout_s)
        except exc.RayActorError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_sigkilled_actor_restarts_with_fresh_state(actor_cluster):
    a = Stateful.options(max_restarts=1).remote()
    assert ember.get([a.inc.remote() for _ in range(3)]) == [1, 2, 3]
    assert ember.get(a.restarted.remote()) is False
    old_pid = ember.get(a.pid.remote())
    os.kill(old_pid, signal.SIGKILL)
    assert _wait_gone(old_pid)
    assert _call_until_ok(a.inc) == 1
    assert ember.get(a.pid.remote()) != old_pid
    assert ember.get(a.restarted.remote()) is True


def test_in_flight_call_is_retried_with_max_task_retries(actor_cluster):
    a = Stateful.options(max_restarts=1, max_task_retries=1).remote()
    pid = ember.get(a.pid.remote())
    slow = a.wait_then.remote(1.0, "done")
    time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)
    assert ember.get(slow, timeout=30) == "done"
    assert ember.get(a.inc.remote()) == 1


def test_in_flight_call_fails_with_the_cause_without_retries(actor_cluster):
    a = Stateful.options(max_restarts=1).remote()
    pid = ember.get(a.pid.remote())
    slow = a.wait_then.remote(5.0, "never")
    time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(exc.ActorDiedError) as info:
        ember.get(slow, timeout=30)
    assert "SIGKILL" in str(info.value)
    assert _call_until_ok(a.inc) == 1  # restarted


def test_dead_when_restarts_are_used_up(actor_cluster):
    a = Stateful.remote()  # max_restarts=0
    pid = ember.get(a.pid.remote())
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(exc.ActorDiedError) as info:
        ember.get(a.inc.remote(), timeout=30)
    assert "SIGKILL" in str(info.value)
    with pytest.raises(exc.RayActorError):  # every later call too
        ember.get(a.inc.remote(), timeout=30)

    b = Stateful.options(max_restarts=1).remote()
    for _ in range(2):
        pid = _call_until_ok(b.pid)
        os.kill(pid, signal.SIGKILL)
        assert _wait_gone(pid)
    with pytest.raises(exc.ActorDiedError, match="No restarts left"):
        ember.get(b.inc.remote(), timeout=30)


def test_kill_no_restart_and_kill_with_restart(actor_cluster):
    a = Stateful.options(max_restarts=2).remote()
    assert ember.get(a.inc.remote()) == 1
    pid = ember.get(a.pid.remote())
    ember.kill(a, no_restart=False)
    assert _wait_gone(pid)
    assert _call_until_ok(a.inc) == 1  # restarted, fresh state
    pid = ember.get(a.pid.remote())
    pending = a.wait_then.remote(10.0, "never")
    ember.kill(a)
    assert _wait_gone(pid)
    with pytest.raises(exc.ActorDiedError, match="ray.kill"):
        ember.get(pending, timeout=30)
    with pytest.raises(exc.ActorDiedError, match="ray.kill"):
        ember.get(a.inc.remote(), timeout=30)
    with pytest.raises(ValueError, match="only supported for actors"):
        ember.kill("not an actor")


def test_exit_actor_ends_it_without_restart(actor_cluster):
    a = Stateful.options(max_restarts=3).remote()
    pid = ember.get(a.pid.remote())
    with pytest.raises(exc.ActorDiedError, match="exit_actor"):
        ember.get(a.bye.remote(), timeout=30)
    assert _wait_gone(pid)
    with pytest.raises(exc.ActorDiedError, match="exit_actor"):
        ember.get(a.inc.remote(), timeout=30)

    b = Stateful.remote()
    pid = ember.get(b.pid.remote())
    first = b.inc.remote()
    b.__ray_terminate__.remote()
    assert ember.get(first) == 1  # queued before the terminate: it ran
    assert _wait_gone(pid)
    with pytest.raises(TypeError, match="non-actor"):
        ember.actor.exit_actor()


def test_dropping_the_last_handle_kills_the_actor(actor_cluster):
    a = Stateful.remote()
    pid = ember.get(a.pid.remote())
    del a
    gc.collect()
    assert _wait_gone(pid)

    # Still running calls keep it alive until they finish.
    b = Stateful.remote()
    pid = ember.get(b.pid.remote())
    ref = b.wait_then.remote(0.5, "finished")
    del b
    gc.collect()
    assert ember.get(ref, timeout=30) == "finished"
    assert _wait_gone(pid)


def test_shared_handle_keeps_the_actor(actor_cluster):
    @ember.remote
    def ping(handles):
        return ember.get(handles[0].inc.remote())

    a = Stateful.remote()
    pid = ember.get(a.pid.remote())
    assert ember.get(ping.remote([a])) == 1
    del a
    gc.collect()
    time.sleep(0.5)
    assert psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE


def test_actors_owned_by_a_dead_actor_die_with_it(actor_cluster):
    @ember.remote
    class Parent:
        def __init__(self):
            self.child = Stateful.remote()

        def child_pid(self):
            return ember.get(self.child.pid.remote())

        def pid(self):
            return os.getpid()

    p = Parent.remote()
    child_pid = ember.get(p.child_pid.remote(), timeout=30)
    os.kill(ember.get(p.pid.remote()), signal.SIGKILL)
    assert _wait_gone(child_pid)


def test_job_end_kills_non_detached_actors(actor_cluster):
    token = lifecycle._local_cluster.token.decode()
    script = textwrap.dedent("""
        import os, ember
        ember.init(address=os.environ["ADDR"])
        @ember.remote
        class A:
            def pid(self):
                return os.getpid()
        a = A.remote()
        print(ember.get(a.pid.remote()), flush=True)
        ember.shutdown()
    """)
    env = dict(os.environ, ADDR=actor_cluster["gcs_address"], EMBER_CLUSTER_TOKEN=token)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert _wait_gone(int(out.stdout.split()[-1]))


def test_actor_whose_init_raises_is_restarted_with_init_run_again(actor_cluster, tmp_path):
    marker = str(tmp_path / "init-attempts")

    @ember.remote(max_restarts=2)
    class Flaky:
        def __init__(self, path):
            n = int(open(path).read()) if os.path.exists(path) else 0
            open(path, "w").write(str(n + 1))
            if n == 0:
                raise RuntimeError("first __init__ fails")
            self.attempts = n + 1

        def attempts_seen(self):
            return self.attempts

    actor = Flaky.remote(marker)
    assert ember.get(actor.attempts_seen.remote(), timeout=60) == 2


def test_actor_whose_init_always_raises_dies_with_the_cause(actor_cluster):
    @ember.remote(max_restarts=1)
    class Broken:
        def __init__(self):
            raise ValueError("never constructible")

        def ping(self):
            return 1

    actor = Broken.remote()
    with pytest.raises(ember.exceptions.RayActorError, match="never constructible"):
        ember.get(actor.ping.remote(), timeout=60)


def test_sigkilled_driver_takes_its_actors_and_borrowers_hear_owner_died(actor_cluster):
    """A driver killed with SIGKILL: its non-detached actor is stopped, its detached actor lives on,
    and that actor's get of an object the dead driver owned raises OwnerDiedError."""
    token = lifecycle._local_cluster.token.decode()
    script = textwrap.dedent("""
        import os, time, ember
        ember.init(address=os.environ["ADDR"])
        @ember.remote
        class Holder:
            def __init__(self):
                self.refs = []
            def pid(self):
                return os.getpid()
            def keep(self, wrapped):
                self.refs = wrapped
                return True
            def read(self):
                return ember.get(self.refs[0], timeout=30)
        a = Holder.remote()
        d = Holder.options(name="orphan_holder", namespace="owner_death", lifetime="detached").remote()
        ember.get(d.keep.remote([ember.put("owned by the driver")]))
        print(ember.get(a.pid.remote()), ember.get(d.pid.remote()), flush=True)
        time.sleep(120)
    """)
    env = dict(os.environ, ADDR=actor_cluster["gcs_address"], EMBER_CLUSTER_TOKEN=token)
    driver = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        line = driver.stdout.readline()
        assert line, driver.stderr.read()
        pid_a, pid_d = (int(x) for x in line.split())
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
        assert _wait_gone(pid_a)
        d = ember.get_actor("orphan_holder", namespace="owner_death")
        assert ember.get(d.pid.remote(), timeout=30) == pid_d
        with pytest.raises(exc.OwnerDiedError):
            ember.get(d.read.remote(), timeout=60)
        ember.kill(d)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(timeout=30)
