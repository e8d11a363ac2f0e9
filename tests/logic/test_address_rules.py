"""Ray's address rules for init(), decided on plain facts (no processes)."""
from ember.logic.discovery import Candidate, JoinCluster, NotFound, StartLocal, decide

HEAD = Candidate("127.0.0.1:6379", "/r/session_head", "start", is_alive=True)
DEAD_HEAD = Candidate("127.0.0.1:6379", "/r/session_head", "start", is_alive=False)
DRIVER = Candidate("127.0.0.1:40001", "/r/session_a", "init", is_alive=True)
OTHER_DRIVER = Candidate("127.0.0.1:40002", "/r/session_b", "init", is_alive=True)
CRASHED = Candidate("127.0.0.1:40003", "/r/session_c", "init", is_alive=False)


def test_local_always_starts_a_new_cluster():
    assert isinstance(decide("local", {}, HEAD, [DRIVER]), StartLocal)
    assert isinstance(decide(None, {"EMBER_ADDRESS": "local"}, HEAD, []), StartLocal)


def test_explicit_address_is_joined_without_looking_further():
    got = decide("ember://10.0.0.1:6379", {"EMBER_ADDRESS": "1.2.3.4:1"}, HEAD, [])
    assert got == JoinCluster("10.0.0.1:6379", "", "address from the address argument")


def test_no_address_prefers_the_environment_then_the_live_head_then_starts():
    got = decide(None, {"EMBER_ADDRESS": "", "RAY_ADDRESS": "10.0.0.2:6379"}, HEAD, [])
    assert isinstance(got, JoinCluster) and got.address == "10.0.0.2:6379" and "RAY_ADDRESS" in got.reason
    got = decide(None, {}, HEAD, [])
    assert isinstance(got, JoinCluster) and got.address == HEAD.address and got.session_dir == HEAD.session_dir
    assert isinstance(decide(None, {}, DEAD_HEAD, []), StartLocal)
    assert isinstance(decide(None, {}, None, [DRIVER]), StartLocal)  # another driver's cluster is not joined


def test_auto_joins_the_only_running_cluster_a_driver_started():
    got = decide("auto", {}, None, [CRASHED, DRIVER])
    assert isinstance(got, JoinCluster) and got.address == DRIVER.address and got.session_dir == DRIVER.session_dir
    got = decide(None, {"RAY_ADDRESS": "auto"}, DEAD_HEAD, [DEAD_HEAD, DRIVER])
    assert isinstance(got, JoinCluster) and got.address == DRIVER.address


def test_auto_never_starts_a_cluster():
    got = decide("auto", {}, None, [CRASHED])
    assert isinstance(got, NotFound) and "Could not find any running ember instance" in got.message
    got = decide("auto", {}, DEAD_HEAD, [])
    assert isinstance(got, NotFound) and "127.0.0.1:6379 is no longer running" in got.message


def test_auto_with_several_running_clusters_asks_for_an_address():
    got = decide("auto", {}, None, [DRIVER, OTHER_DRIVER])
    assert isinstance(got, NotFound) and "multiple" in got.message
    assert DRIVER.address in got.message and OTHER_DRIVER.address in got.message


def test_auto_prefers_the_live_head_over_driver_clusters():
    got = decide("auto", {}, HEAD, [DRIVER, OTHER_DRIVER])
    assert isinstance(got, JoinCluster) and got.address == HEAD.address


def test_auto_takes_an_address_from_the_environment_as_ray_does():
    got = decide("auto", {"EMBER_ADDRESS": "10.0.0.3:6379"}, None, [])
    assert got == JoinCluster("10.0.0.3:6379", "", "address from EMBER_ADDRESS")
    assert isinstance(decide("local", {"EMBER_ADDRESS": "10.0.0.3:6379"}, None, []), StartLocal)
    assert isinstance(decide(None, {"EMBER_ADDRESS": "auto"}, None, []), NotFound)
