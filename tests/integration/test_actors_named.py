"""Named and detached actors, namespaces, and several drivers on one cluster."""
import os
import subprocess
import sys
import textwrap

import pytest

import ember
from ember import lifecycle
from ember import exceptions as exc

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def actor_cluster():
    if ember.is_initialized():
        ember.shutdown()
    ctx = ember.init(num_cpus=2, namespace="named-tests")
    yield ctx
    ember.shutdown()


@ember.remote
class Box:
    def __init__(self, value=None):
        self.value = value

    def put(self, value):
        self.value = value

    def get(self):
        return self.value


def test_get_actor_by_name(actor_cluster):
    b = Box.options(name="box1").remote(5)
    found = ember.get_actor("box1")
    assert found == b
    assert ember.get(found.get.remote()) == 5
    assert ember.get_runtime_context().namespace == "named-tests"
    assert "box1" in ember.util.list_named_actors()


def test_unknown_name_is_a_value_error(actor_cluster):
    with pytest.raises(ValueError, match="Failed to look up actor with name 'no-such-box'"):
        ember.get_actor("no-such-box")
    with pytest.raises(ValueError):
        ember.get_actor("")


def test_a_name_taken_twice_fails_clearly(actor_cluster):
    Box.options(name="box2").remote()
    with pytest.raises(ValueError, match="already taken"):
        Box.options(name="box2").remote()


def test_get_if_exists_returns_the_existing_actor(actor_cluster):
    first = Box.options(name="box3", get_if_exists=True).remote(1)
    second = Box.options(name="box3", get_if_exists=True).remote(2)
    assert first == second
    assert ember.get(second.get.remote()) == 1


def test_namespaces_separate_names(actor_cluster):
    other = Box.options(name="shared", namespace="other-ns").remote("other")
    mine = Box.options(name="shared").remote("mine")
    assert other != mine
    assert ember.get(ember.get_actor("shared").get.remote()) == "mine"
    assert ember.get(ember.get_actor("shared", namespace="other-ns").get.remote()) == "other"
    everywhere = ember.util.list_named_actors(all_namespaces=True)
    assert {"name": "shared", "namespace": "other-ns"} in everywhere
    assert {"name": "shared", "namespace": "named-tests"} in everywhere
    assert "shared" in ember.util.list_named_actors()


def test_a_killed_name_is_free_again(actor_cluster):
    b = Box.options(name="box4").remote()
    ember.get(b.get.remote())
    ember.kill(b)
    with pytest.raises(exc.RayActorError):
        ember.get(b.get.remote(), timeout=30)
    with pytest.raises(ValueError):
        ember.get_actor("box4")
    again = Box.options(name="box4").remote(7)
    assert ember.get(again.get.remote()) == 7


# --- several drivers ----------------------------------------------------------------------------
_DRIVER_PRELUDE = """
import os, sys, ember
ember.init(address=os.environ["ADDR"], namespace=os.environ.get("NS") or None)

@ember.remote
class Box:
    def __init__(self, value=None):
        self.value = value
    def put(self, value):
        self.value = value
    def get(self):
        return self.value
"""


def _run_driver(cluster, body, namespace="drivers", wait=True):
    env = dict(os.environ, ADDR=cluster["gcs_address"], EMBER_CLUSTER_TOKEN=lifecycle._local_cluster.token.decode(),
               NS=namespace)
    code = _DRIVER_PRELUDE + textwrap.dedent(body)
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    return out.strip()


def test_detached_actor_survives_its_driver(actor_cluster):
    out = _run_driver(actor_cluster, """
        b = Box.options(name="keeper", lifetime="detached").remote()
        ember.get(b.put.remote("from the first driver"))
        normal = Box.options(name="goes-away").remote()
        ember.get(normal.get.remote())
        print(ember.get_runtime_context().namespace)
    """)
    assert out == "drivers"
    out = _run_driver(actor_cluster, """
        b = ember.get_actor("keeper")
        print(ember.get(b.get.remote()))
        try:
            ember.get_actor("goes-away")
            print("still there")
        except ValueError:
            print("gone")
    """)
    assert out.splitlines() == ["from the first driver", "gone"]
    keeper = ember.get_actor("keeper", namespace="drivers")
    assert ember.get(keeper.get.remote()) == "from the first driver"
    ember.kill(keeper)
    with pytest.raises(ValueError):
        ember.get_actor("keeper", namespace="drivers")


def test_get_if_exists_from_two_drivers_at_once_creates_one_actor(actor_cluster):
    body = """
        b = Box.options(name="only-one", get_if_exists=True, lifetime="detached").remote(os.getpid())
        print(b._actor_id.hex(), ember.get(b.get.remote()))
    """
    procs = [_run_driver(actor_cluster, body, wait=False) for _ in range(2)]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        outs.append(out.split())
    assert outs[0] == outs[1]  # same actor id, same creator pid
    survivor = ember.get_actor("only-one", namespace="drivers")
    assert survivor._actor_id.hex() == outs[0][0]
    ember.kill(survivor)


def test_anonymous_namespaces_do_not_share_names(actor_cluster):
    _run_driver(actor_cluster, """
        Box.options(name="anon-box", lifetime="detached").remote()
        print(ember.get_runtime_context().namespace)
    """, namespace="")
    with pytest.raises(ValueError):
        ember.get_actor("anon-box", namespace="drivers")
    names = [d for d in ember.util.list_named_actors(all_namespaces=True) if d["name"] == "anon-box"]
    assert len(names) == 1 and names[0]["namespace"].startswith("anon-")
    ember.kill(ember.get_actor("anon-box", namespace=names[0]["namespace"]))
