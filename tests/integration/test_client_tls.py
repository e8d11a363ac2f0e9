"""The remote client of a TLS cluster (docs/client.md): the tunnel, the per-session listener and
the client server's dials to the cluster all use the EMBER_TLS_* files; a client without a
certificate of the cluster's CA is refused."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import trustme

from ember.shells.wire import tls

pytestmark = pytest.mark.timeout(240)


def _identity(ca: trustme.CA, directory, name: str) -> dict[str, str]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = {tls.ENV_CERT: str(directory / f"{name}.pem"), tls.ENV_KEY: str(directory / f"{name}.key"),
             tls.ENV_CA: str(directory / f"{name}-ca.pem")}
    cert.private_key_and_cert_chain_pem.write_to_path(paths[tls.ENV_CERT])
    cert.private_key_pem.write_to_path(paths[tls.ENV_KEY])
    ca.cert_pem.write_to_path(paths[tls.ENV_CA])
    return paths


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CLIENT = """
import json, os, ember, numpy as np
try:
    ember.init(os.environ["CLIENT_ADDRESS"])
except Exception as e:
    print("RESULT " + json.dumps({"error": f"{type(e).__name__}: {e}"}))
    raise SystemExit(0)
from ember.shells.worker.core_worker import get_core_worker
@ember.remote
def f(x):
    return x + 1
@ember.remote
class A:
    def v(self):
        return "tls actor"
a = A.remote()
big = np.arange(1_000_000)
tunnel = get_core_worker().tunnel.conn
print("RESULT " + json.dumps({
    "task": ember.get(f.remote(1)), "actor": ember.get(a.v.remote()),
    "big": int(ember.get(ember.put(big)).sum()) == int(big.sum()),
    "tls": tunnel._transport.get_extra_info("ssl_object") is not None}))
ember.shutdown()
"""


def test_a_client_of_a_tls_cluster(tmp_path):
    ca, other = trustme.CA(), trustme.CA()
    node = _identity(ca, tmp_path, "node")
    stranger = dict(_identity(other, tmp_path, "stranger"), **{tls.ENV_CA: node[tls.ENV_CA]})
    root = tmp_path / "root"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_TLS_")}
    head_env = {**env, **node, "EMBER_TMPDIR": str(root)}
    port = _free_port()
    started = subprocess.run([sys.executable, "-m", "ember.cli.main", "start", "--head", "--port", "0", "--num-cpus",
                              "1", "--include-dashboard", "false", "--client-server-port", str(port)],
                             env=head_env, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    try:
        session_dir = json.load(open(root / "current_cluster"))["session_dir"]
        token = open(os.path.join(session_dir, "token")).read().strip()

        def client(extra: dict) -> dict:
            run_env = {**env, **extra, "EMBER_CLUSTER_TOKEN": token, "EMBER_TMPDIR": str(tmp_path / "client"),
                       "CLIENT_ADDRESS": f"ember://127.0.0.1:{port}", "EMBER_CONNECT_TIMEOUT_S": "5"}
            done = subprocess.run([sys.executable, "-c", textwrap.dedent(CLIENT)], env=run_env, capture_output=True,
                                  text=True, timeout=120)
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
            assert lines, done.stderr[-3000:]
            return json.loads(lines[-1][7:])

        assert client(node) == {"task": 2, "actor": "tls actor", "big": True, "tls": True}
        refused = client(stranger)
        assert "ConnectionError" in refused.get("error", "") and "TLS" in refused["error"], refused
    finally:
        subprocess.run([sys.executable, "-m", "ember.cli.main", "stop"], env=head_env, capture_output=True,
                       timeout=120)
