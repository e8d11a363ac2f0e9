"""Project-wide test settings."""
import os

from hypothesis import settings

# CI runs property tests with a fixed seed so a landing never depends on luck; locally they
# explore new examples each run.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

# Every test run gets a session root of its own, so `ember.init()` with no address never joins a
# cluster that another run (or the user's `ember start --head`) recorded, and nothing the run leaves
# under it outlives the run.
import shutil
import tempfile

_PARENT_ROOT = os.environ.get("EMBER_TMPDIR") or None
if _PARENT_ROOT:
    os.makedirs(_PARENT_ROOT, mode=0o700, exist_ok=True)
_RUN_ROOT = tempfile.mkdtemp(prefix="ember-tests-", dir=_PARENT_ROOT)
os.environ["EMBER_TMPDIR"] = _RUN_ROOT
for _name in ("EMBER_ADDRESS", "RAY_ADDRESS"):
    os.environ.pop(_name, None)
# Heads that tests start serve remote clients on a free port, not all on 10001 (tests that need a
# known port pass --client-server-port).
os.environ.setdefault("EMBER_CLIENT_SERVER_PORT", "0")


def pytest_unconfigure(config):
    shutil.rmtree(_RUN_ROOT, ignore_errors=True)
