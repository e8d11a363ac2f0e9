"""TLS on ember's wire, with certificates made in the test (trustme): mutual TLS accepts a
peer of the cluster's CA and refuses one of another CA or one without TLS; a whole cluster
started with EMBER_TLS_* runs tasks and its ports speak only TLS."""
from __future__ import annotations

import asyncio
import os
import socket
import ssl
import textwrap

import pytest
import trustme

from cli_harness import CliHarness
from ember.protocol import messages as m
from ember.shells.wire import rpc, tls

pytestmark = pytest.mark.timeout(180)


class _Echo:
    def handle_message(self, conn, kind, request_id, msg):
        conn.reply(request_id, m.Ok())

    def connection_lost(self, conn):
        pass


def _write_identity(ca: trustme.CA, directory, name: str) -> dict[str, str]:
    cert = ca.issue_cert("127.0.0.1", "localhost", "ember-node")
    paths = {tls.ENV_CERT: str(directory / f"{name}.pem"), tls.ENV_KEY: str(directory / f"{name}.key"),
             tls.ENV_CA: str(directory / f"{name}-ca.pem")}
    cert.private_key_and_cert_chain_pem.write_to_path(paths[tls.ENV_CERT])
    cert.private_key_pem.write_to_path(paths[tls.ENV_KEY])
    ca.cert_pem.write_to_path(paths[tls.ENV_CA])
    return paths


@pytest.fixture
def identities(tmp_path):
    ca, other_ca = trustme.CA(), trustme.CA()
    return _write_identity(ca, tmp_path, "node"), _write_identity(other_ca, tmp_path, "stranger")


def _set_env(monkeypatch, env):
    for name in (tls.ENV_CERT, tls.ENV_KEY, tls.ENV_CA):
        monkeypatch.delenv(name, raising=False)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)


def _exchange(monkeypatch, server_env, client_env, timeout_s=10):
    """Serve with server_env, connect with client_env; the reply, or the exception raised."""
    async def main():
        _set_env(monkeypatch, server_env)
        server = await rpc.serve(_Echo(), "127.0.0.1", 0, b"tok")
        port = server.sockets[0].getsockname()[1]
        _set_env(monkeypatch, client_env)
        try:
            conn = await rpc.connect(f"127.0.0.1:{port}", b"tok", _Echo(), "cli", timeout_s=timeout_s)
            is_tls = conn._transport.get_extra_info("ssl_object") is not None
            reply = await conn.request(m.GetNodes(), timeout_s=10)
            conn.close()
            return reply, is_tls
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            return exc, None
        finally:
            server.close()

    return asyncio.run(main())


def test_mutual_tls_between_peers_of_one_ca(monkeypatch, identities):
    node, _ = identities
    reply, is_tls = _exchange(monkeypatch, node, node)
    assert reply == m.Ok() and is_tls


def test_client_with_a_certificate_of_another_ca_is_refused(monkeypatch, identities):
    node, stranger = identities
    # The stranger trusts the cluster's CA (so it would accept the server) but its own
    # certificate comes from another CA: the server must refuse it.
    stranger = dict(stranger, **{tls.ENV_CA: node[tls.ENV_CA]})
    result, _ = _exchange(monkeypatch, node, stranger)
    assert isinstance(result, (ssl.SSLError, ConnectionError, OSError, rpc.ConnectionLost)), result


def test_server_with_a_certificate_of_another_ca_is_refused(monkeypatch, identities):
    node, stranger = identities
    result, _ = _exchange(monkeypatch, stranger, node)
    assert isinstance(result, (ssl.SSLError, ConnectionError, OSError)), result


def test_plain_client_gets_nothing_from_a_tls_listener(monkeypatch, identities):
    node, _ = identities
    result, _ = _exchange(monkeypatch, node, None, timeout_s=2)
    assert isinstance(result, (ConnectionError, OSError, TimeoutError, rpc.ConnectionLost)), result


def test_tls_without_a_ca_encrypts_and_the_token_still_authenticates(monkeypatch, identities):
    node, _ = identities
    no_ca = {k: v for k, v in node.items() if k != tls.ENV_CA}
    reply, is_tls = _exchange(monkeypatch, no_ca, no_ca)
    assert reply == m.Ok() and is_tls


def test_incomplete_tls_settings_are_a_clear_error(tmp_path):
    with pytest.raises(tls.TlsConfigError, match="both a certificate and a key"):
        tls.tls_files(str(tmp_path / "c.pem"), None)
    with pytest.raises(tls.TlsConfigError, match="does not exist"):
        tls.tls_files(str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))


def test_a_tls_cluster_runs_tasks_and_speaks_only_tls(tmp_path, identities):
    node, _ = identities
    h = CliHarness(str(tmp_path / "root"))
    try:
        done = h.ember("start", "--head", "--port", "0", "--num-cpus", "1", "--tls-cert", node[tls.ENV_CERT],
                       "--tls-key", node[tls.ENV_KEY], "--tls-ca", node[tls.ENV_CA])
        assert done.returncode == 0, done.stdout + done.stderr
        host, port = rpc.split_address(h.current_cluster()["address"])
        # A plain client gets no challenge: the listener waits for a TLS ClientHello.
        with socket.create_connection((host, port), timeout=10) as s:
            s.sendall(b"\x00" * 8)
            s.settimeout(10)
            try:
                first = s.recv(64)
            except (ConnectionResetError, socket.timeout):
                first = b""
            assert first == b"" or first[:1] == b"\x15", first  # a TLS alert at most, never a challenge frame
        driver = textwrap.dedent("""
            import ember
            @ember.remote
            def f(x):
                return x * 2
            ember.init(address="auto")
            print("RESULT", ember.get([f.remote(i) for i in range(3)]))
            ember.shutdown()
        """)
        without = h.python(driver, timeout_s=60)
        assert without.returncode != 0
        h.env.update(node)
        with_tls = h.python(driver, timeout_s=120)
        assert "RESULT [0, 2, 4]" in with_tls.stdout, with_tls.stdout + with_tls.stderr
        for name in (tls.ENV_CERT, tls.ENV_KEY, tls.ENV_CA):
            h.env.pop(name)
        stopped = h.ember("stop")
        assert stopped.returncode == 0
    finally:
        h.ember("stop")
        assert not h.kill_leftovers()
