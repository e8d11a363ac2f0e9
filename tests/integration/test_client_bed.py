"""The remote client across a network (docs/client.md): the head in one network namespace, the
client in another with no ember process of its own, its link cut and restored.

The client server runs with a short grace period (8 s) and idle timeout (2 s) so that both a
drop within the grace period (the client reconnects, calls made during the outage complete,
none runs twice, refs from before still work) and one past it (the session is cleaned up, the
client gets a clear error) fit in a test.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from bed.netbed import HostSpec, NetBed, bed_unavailable_reason

pytestmark = pytest.mark.timeout(300)

GRACE_S = 8
CLIENT_PORT = 10001


@pytest.fixture(scope="module")
def bed():
    reason = bed_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    env = {"EMBER_CLIENT_RECONNECT_GRACE_S": str(GRACE_S), "EMBER_CLIENT_IDLE_TIMEOUT_S": "2"}
    with NetBed([HostSpec(num_cpus=2, extra_args=("--client-server-port", str(CLIENT_PORT)))], env=env) as b:
        b.add_host(start_node=False)   # host 1: the client's machine
        yield b


class ClientScript:
    """A client program in host 1; it waits at each ``step(name)`` until the test releases it."""

    def __init__(self, bed: NetBed, tmp_path, body: str, token: str = "") -> None:
        self.dir = tmp_path
        prelude = f"""
            import json, os, sys, time
            import ember
            def step(name):
                print("AT " + name, flush=True)
                while not os.path.exists(os.path.join({str(tmp_path)!r}, "go-" + name)):
                    time.sleep(0.05)
            ADDRESS = "ember://{bed.head.ip}:{CLIENT_PORT}"
        """
        code = textwrap.dedent(prelude) + textwrap.dedent(body)
        env = bed._host_env(bed.hosts[1])
        if token:
            env["EMBER_CLUSTER_TOKEN"] = token
        self.proc = subprocess.Popen(["ip", "netns", "exec", bed.hosts[1].netns, sys.executable, "-c", code],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     stdin=subprocess.DEVNULL)

    def wait_at(self, name: str, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.strip() == f"AT {name}":
                return
            if not line and self.proc.poll() is not None:
                break
        self.proc.kill()
        raise AssertionError(f"the client never reached {name}: {self.proc.stderr.read()[-3000:]}")

    def release(self, name: str) -> None:
        open(os.path.join(self.dir, "go-" + name), "w").close()

    def result(self, timeout_s: float = 120) -> dict:
        try:
            out, err = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
        assert lines, f"no result (rc={self.proc.returncode}):\n{out[-2000:]}\n{err[-4000:]}"
        return json.loads(lines[-1][len("RESULT "):])


def _stored_objects(bed: NetBed) -> int:
    import re
    out = bed.ember(0, "status").stdout
    found = re.search(r"(\d+) objects in object stores", out)
    assert found, out
    return int(found.group(1))


def test_client_on_another_host_runs_tasks_actors_and_objects(bed, tmp_path):
    script = ClientScript(bed, tmp_path, """
        import numpy as np
        ember.init(ADDRESS)
        @ember.remote
        def f(x):
            return x + 1
        @ember.remote
        class A:
            def __init__(self): self.n = 0
            def inc(self): self.n += 1; return self.n
        a = A.remote()
        big = np.arange(2_000_000)
        ref = ember.put(big)
        @ember.remote
        def total(x): return int(x.sum())
        print("RESULT " + json.dumps({
            "task": ember.get(f.remote(1)),
            "actor": ember.get([a.inc.remote() for _ in range(3)]),
            "big": int(ember.get(ref).sum()) == int(big.sum()),
            "remote_total": ember.get(total.remote(ref)) == int(big.sum()),
            "cpus": ember.cluster_resources()["CPU"],
        }))
        ember.shutdown()
    """)
    got = script.result()
    assert got == {"task": 2, "actor": [1, 2, 3], "big": True, "remote_total": True, "cpus": 2}


def test_a_cut_link_within_the_grace_period_is_survived(bed, tmp_path):
    script = ClientScript(bed, tmp_path, """
        import numpy as np
        from ember.shells.worker.core_worker import get_core_worker
        ember.init(ADDRESS, namespace="survivor")
        @ember.remote
        class Counter:
            def __init__(self): self.n = 0
            def inc(self): self.n += 1; return self.n
            def count(self): return self.n
        @ember.remote
        def f(x): return x * 10
        c = Counter.options(name="counter").remote()
        ember.get(c.inc.remote())
        before = ember.put(np.arange(500_000))
        early = f.remote(1)
        ember.get(early)
        step("cut")
        during = [c.inc.remote() for _ in range(5)]     # made while the link is down
        task = f.remote(7)
        incs = ember.get(during, timeout=120)
        print("RESULT " + json.dumps({
            "incs": incs, "count": ember.get(c.count.remote()), "task": ember.get(task),
            "before": int(ember.get(before).sum()) == int(np.arange(500_000).sum()),
            "early": ember.get(early), "reconnects": get_core_worker().tunnel.reconnects,
        }))
        ember.shutdown()
    """)
    script.wait_at("cut")
    bed.cut(1)
    try:
        script.release("cut")
        time.sleep(GRACE_S / 2 + 1)    # past the idle timeout (both ends drop the connection), within grace
    finally:
        bed.restore(1)
    got = script.result()
    assert got["incs"] == [2, 3, 4, 5, 6]     # each call ran once, in order
    assert got["count"] == 6
    assert got["task"] == 70 and got["early"] == 10 and got["before"]
    assert got["reconnects"] >= 1


def test_a_cut_past_the_grace_period_ends_the_session_with_a_clear_error(bed, tmp_path):
    script = ClientScript(bed, tmp_path, """
        ember.init(ADDRESS, namespace="expiring")
        @ember.remote
        class Counter:
            def __init__(self): self.n = 0
            def inc(self): self.n += 1; return self.n
        c = Counter.options(name="temporary").remote()
        d = Counter.options(name="kept", lifetime="detached").remote()
        ember.get([c.inc.remote(), d.inc.remote()])
        import numpy as np
        owned = ember.put(np.zeros(5_000_000, dtype=np.uint8))   # in the head node's store
        step("cut")
        errors = []
        try:
            ember.get(c.inc.remote(), timeout=120)
        except Exception as e:
            errors.append(f"{type(e).__name__}: {e}")
        try:
            ember.put(1)
        except Exception as e:
            errors.append(f"{type(e).__name__}: {e}")
        print("RESULT " + json.dumps({"errors": errors}))
    """)
    script.wait_at("cut")
    assert _stored_objects(bed) >= 1
    bed.cut(1)
    try:
        script.release("cut")
        time.sleep(GRACE_S + 6)
    finally:
        bed.restore(1)
    got = script.result()
    assert len(got["errors"]) == 2, got
    for error in got["errors"]:
        assert "grace period" in error or "ended this client's session" in error, error
    # The cluster cleaned up: the non-detached actor is gone, the detached one stays.
    import ember
    os.environ["EMBER_CLUSTER_TOKEN"] = bed.token
    ember.init(address=bed.address, namespace="expiring")   # a driver in the root namespace
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                ember.get_actor("temporary")
            except ValueError:
                break
            assert time.monotonic() < deadline, "the expired client's actor is still alive"
            time.sleep(0.5)
        kept = ember.get_actor("kept")
        assert ember.get(kept.inc.remote()) == 2
        ember.kill(kept)
        deadline = time.monotonic() + 30
        while _stored_objects(bed) != 0:   # the client's object was freed with its session
            assert time.monotonic() < deadline, "the expired client's object is still stored"
            time.sleep(0.5)
    finally:
        ember.shutdown()
        os.environ.pop("EMBER_CLUSTER_TOKEN", None)


def test_a_client_without_the_token_is_refused_across_the_network(bed, tmp_path):
    script = ClientScript(bed, tmp_path, """
        try:
            ember.init(ADDRESS)
            print("RESULT " + json.dumps({"error": None}))
        except ConnectionError as e:
            print("RESULT " + json.dumps({"error": str(e)}))
    """, token="wrong-token")
    got = script.result()
    assert got["error"] and "refused" in got["error"] and "token" in got["error"]


NOTEBOOK_CELLS = [
    "import ember\nctx = ember.init(ADDRESS)\nprint('connected', ctx['namespace'] != '')",
    "@ember.remote\ndef square(x):\n    return x * x\n\nember.get([square.remote(i) for i in range(5)])",
    "@ember.remote\nclass Greeter:\n    def __init__(self, who):\n        self.who = who\n"
    "    def greet(self):\n        return f'hello {self.who}'\n\ng = Greeter.remote('notebook')\nember.get(g.greet.remote())",
    "ref = ember.put(list(range(1000)))\nsum(ember.get(ref))",
    "ember.shutdown()\nprint('bye')",
]

RUN_NOTEBOOK = """
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=120, kernel_name="python3").execute()
nbformat.write(nb, sys.argv[2])
"""


def test_a_notebook_on_the_client_host_uses_the_cluster(bed, tmp_path):
    """A real Jupyter kernel (nbclient + ipykernel) in the client's namespace host runs cells that
    connect with ember://, define a remote function and an actor, and get results."""
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"ADDRESS = 'ember://{bed.head.ip}:{CLIENT_PORT}'")]
    nb.cells += [nbformat.v4.new_code_cell(src) for src in NOTEBOOK_CELLS]
    source, executed = tmp_path / "client.ipynb", tmp_path / "executed.ipynb"
    nbformat.write(nb, source)
    done = bed.exec(1, [sys.executable, "-c", RUN_NOTEBOOK, str(source), str(executed)], timeout_s=240)
    assert done.returncode == 0, done.stderr[-4000:]
    cells = nbformat.read(executed, as_version=4).cells

    def text(cell) -> str:
        parts = []
        for out in cell.outputs:
            parts.append(out.get("text", "") or out.get("data", {}).get("text/plain", ""))
        return "".join(parts)

    assert "connected True" in text(cells[1])
    assert text(cells[2]) == "[0, 1, 4, 9, 16]"
    assert text(cells[3]) == "'hello notebook'"
    assert text(cells[4]) == str(sum(range(1000)))
    assert "bye" in text(cells[5])
