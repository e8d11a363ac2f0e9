"""The job server over TLS with mutual authentication, with certificates made in the test (trustme)."""
from __future__ import annotations

import asyncio
import os
import urllib.request

import pytest

import ember
from jobs_helpers import wait_status

trustme = pytest.importorskip("trustme")
pytestmark = pytest.mark.timeout(180)
_VARS = ("EMBER_TLS_CERT", "EMBER_TLS_KEY", "EMBER_TLS_CA")


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    ca, other_ca = trustme.CA(), trustme.CA()
    files = {}
    for name, cert in (("server", ca.issue_cert("127.0.0.1", "localhost")), ("client", ca.issue_cert("client")),
                       ("rogue", other_ca.issue_cert("client"))):
        cert.private_key_pem.write_to_path(str(d / f"{name}.key"))
        cert.cert_chain_pems[0].write_to_path(str(d / f"{name}.pem"))
        files[name] = (str(d / f"{name}.pem"), str(d / f"{name}.key"))
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    saved = {k: os.environ.get(k) for k in (*_VARS, "EMBER_CLUSTER_TOKEN")}
    os.environ.update(EMBER_TLS_CERT=files["server"][0], EMBER_TLS_KEY=files["server"][1],
                      EMBER_TLS_CA=str(d / "ca.pem"))
    if ember.is_initialized():
        ember.shutdown()
    try:
        ctx = ember.init(num_cpus=1, include_dashboard=True, dashboard_port=0)
    finally:
        for k in _VARS:
            os.environ.pop(k, None)
    with open(os.path.join(ctx["session_dir"], "token")) as f:
        os.environ["EMBER_CLUSTER_TOKEN"] = f.read().strip()
    yield ctx["dashboard_url"], files, str(d / "ca.pem")
    ember.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _client(monkeypatch, url, ca, cert=None):
    from ember.job_submission import JobSubmissionClient
    monkeypatch.setenv("EMBER_TLS_CA", ca)
    if cert:
        monkeypatch.setenv("EMBER_TLS_CERT", cert[0])
        monkeypatch.setenv("EMBER_TLS_KEY", cert[1])
    else:
        monkeypatch.delenv("EMBER_TLS_CERT", raising=False)
        monkeypatch.delenv("EMBER_TLS_KEY", raising=False)
    return JobSubmissionClient(url)


def test_https_with_a_client_certificate_runs_a_job_and_streams_logs(tls_server, monkeypatch):
    url, files, ca = tls_server
    assert url.startswith("https://")
    client = _client(monkeypatch, url, ca, files["client"])
    sid = client.submit_job(entrypoint="echo over-tls")

    async def collect():
        return "".join([c async for c in client.tail_job_logs(sid)])

    assert "over-tls" in asyncio.run(asyncio.wait_for(collect(), 90))
    assert wait_status(client, sid).status == "SUCCEEDED"


def test_clients_without_the_right_certificate_are_refused(tls_server, monkeypatch):
    url, files, ca = tls_server
    with pytest.raises(ConnectionError):
        _client(monkeypatch, url, ca, None)  # no client certificate
    with pytest.raises(ConnectionError):
        _client(monkeypatch, url, ca, files["rogue"])  # a certificate from another CA
    with pytest.raises(Exception):
        urllib.request.urlopen(url.replace("https://", "http://") + "/api/version", timeout=10).read()


def test_non_loopback_without_tls_warns():
    from ember.shells.control.jobs import tls
    assert tls.exposure_warning("0.0.0.0", has_tls=False) is not None
    assert tls.exposure_warning("0.0.0.0", has_tls=True) is None
    assert tls.exposure_warning("127.0.0.1", has_tls=False) is None
