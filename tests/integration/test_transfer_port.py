"""The transfer port with real sockets and real shared-memory files (no cluster): every byte
across chunk boundaries and odd sizes, striping over two holders, a holder killed mid-transfer,
spilled objects served from the spill file, TLS, and wrong tokens refused."""
from __future__ import annotations

import hashlib
import os
import signal
import threading
import time

import pytest
import trustme

from ember.shells.node.transfer_client import FetchJob, TransferClient
from ember.shells.node.transfer_server import TransferServer
from ember.shells.shared.shm_store import ShmStore
from ember.shells.wire import tls

pytestmark = pytest.mark.timeout(120)

CHUNK = 64 * 1024
TOKEN = b"cluster-token"
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7, 5 * 1024 * 1024 + 3]


@pytest.fixture
def stores(tmp_path):
    made = []

    def make(name: str) -> ShmStore:
        store = ShmStore(os.path.join("/dev/shm", f"ember-test-transfer-{os.getpid()}-{name}"))
        store.create_dir()
        made.append(store)
        return store
    yield make
    for store in made:
        store.remove_dir()


@pytest.fixture
def servers():
    started = []

    def serve(store: ShmStore, spill_dir: str = "/nonexistent", token: bytes = TOKEN) -> TransferServer:
        server = TransferServer("127.0.0.1", token, store, spill_dir)
        server.start()
        started.append(server)
        return server
    yield serve
    for server in started:
        server.close()


def _endpoint(server: TransferServer) -> str:
    return f"127.0.0.1:{server.port}"


def _fetch(client: TransferClient, endpoints: list[str], oid: bytes, size: int, conns: int = 3) -> FetchJob:
    job = FetchJob(oid, memoryview(bytearray(size)), size, CHUNK)
    threads = [threading.Thread(target=client.run_stripe, args=(job, ep, 2)) for ep in endpoints for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return job


def _fetch_into_file(client: TransferClient, endpoint: str, oid: bytes, size: int, store: ShmStore) -> bytes:
    """The splice path: socket -> pipe -> a fresh file, as a pull into new pages does."""
    path = os.path.join(store.directory, "spliced.tmp")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, size)
        job = FetchJob(oid, None, size, CHUNK, fd=fd)
        threads = [threading.Thread(target=client.run_stripe, args=(job, endpoint, 2)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert job.is_complete and not job.failed
        return os.pread(fd, size, 0) if size else b""
    finally:
        os.close(fd)
        os.unlink(path)


def test_every_byte_arrives_across_chunk_boundaries_and_odd_sizes(stores, servers):
    store = stores("a")
    server = servers(store)
    client = TransferClient(TOKEN)
    try:
        for size in SIZES:
            data = os.urandom(size)
            oid = hashlib.sha1(data + size.to_bytes(8, "little")).digest()
            store.write_bytes(oid, data)
            assert client.size_of(_endpoint(server), oid) == size
            job = _fetch(client, [_endpoint(server)], oid, size)
            assert job.is_complete and not job.failed
            assert hashlib.sha256(job.buffer).digest() == hashlib.sha256(data).digest(), size
            spliced = _fetch_into_file(client, _endpoint(server), oid, size, store)
            assert spliced == data, size
    finally:
        client.close()


def test_one_object_striped_over_two_holders(stores, servers):
    data = os.urandom(4 * 1024 * 1024 + 5)
    oid = b"s" * 20
    one, two = stores("one"), stores("two")
    one.write_bytes(oid, data)
    two.write_bytes(oid, data)
    s1, s2 = servers(one), servers(two)
    client = TransferClient(TOKEN)
    try:
        job = _fetch(client, [_endpoint(s1), _endpoint(s2)], oid, len(data), conns=2)
        assert job.is_complete and bytes(job.buffer) == data
        assert s1.bytes_served > 0 and s2.bytes_served > 0
    finally:
        client.close()


def test_a_missing_object_fails_that_source_only(stores, servers):
    store = stores("a")
    server = servers(store)
    client = TransferClient(TOKEN)
    try:
        assert client.size_of(_endpoint(server), b"n" * 20) is None
        job = _fetch(client, [_endpoint(server)], b"n" * 20, 10)
        assert not job.is_complete and "does not hold" in job.failed[_endpoint(server)]
    finally:
        client.close()


def test_a_spilled_object_is_served_from_its_spill_file(stores, servers, tmp_path):
    store = stores("a")
    data = os.urandom(3 * CHUNK + 11)
    oid = b"p" * 20
    store.write_bytes(oid, data)
    store.spill(oid, str(tmp_path))
    assert not store.contains(oid)
    server = servers(store, spill_dir=str(tmp_path))
    client = TransferClient(TOKEN)
    try:
        job = _fetch(client, [_endpoint(server)], oid, len(data))
        assert job.is_complete and bytes(job.buffer) == data
        assert not store.contains(oid)  # served without a restore into shared memory
    finally:
        client.close()


def test_a_wrong_token_is_refused(stores, servers):
    store = stores("a")
    store.write_bytes(b"t" * 20, b"secret bytes")
    server = servers(store)
    client = TransferClient(b"not the token")
    try:
        job = _fetch(client, [_endpoint(server)], b"t" * 20, 12, conns=1)
        assert not job.is_complete
        assert "refused the transfer handshake" in job.failed[_endpoint(server)]
        assert bytes(job.buffer) == bytes(12)
    finally:
        client.close()


def test_a_server_with_a_wrong_token_is_not_trusted(stores, servers):
    store = stores("a")
    store.write_bytes(b"t" * 20, b"x")
    server = servers(store, token=b"impostor")
    client = TransferClient(TOKEN)
    try:
        job = _fetch(client, [_endpoint(server)], b"t" * 20, 1, conns=1)
        assert not job.is_complete and _endpoint(server) in job.failed
    finally:
        client.close()


class _PausingJob(FetchJob):
    """Stops the first receiving thread after its first chunk until ``go`` is set."""

    def __init__(self, *args):
        super().__init__(*args)
        self.first_chunk = threading.Event()
        self.go = threading.Event()

    def chunk_done(self, nbytes):
        super().chunk_done(nbytes)
        if not self.first_chunk.is_set():
            self.first_chunk.set()
            self.go.wait(30)


def test_a_holder_killed_mid_transfer_leaves_its_chunks_to_another(stores):
    data = os.urandom(16 * 1024 * 1024 + 1)
    oid = b"k" * 20
    one, two = stores("one"), stores("two")
    one.write_bytes(oid, data)
    two.write_bytes(oid, data)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the holder that dies
        try:
            server = TransferServer("127.0.0.1", TOKEN, one, "/nonexistent")
            server.start()
            os.write(write_end, server.port.to_bytes(4, "little"))
            time.sleep(60)
        finally:
            os._exit(0)
    dying = f"127.0.0.1:{int.from_bytes(os.read(read_end, 4), 'little')}"
    survivor = TransferServer("127.0.0.1", TOKEN, two, "/nonexistent")
    survivor.start()
    client = TransferClient(TOKEN)
    try:
        job = _PausingJob(oid, memoryview(bytearray(len(data))), len(data), 1024 * 1024)
        worker = threading.Thread(target=client.run_stripe, args=(job, dying, 2))
        worker.start()
        assert job.first_chunk.wait(30)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pid = 0
        job.go.set()
        worker.join(30)
        assert dying in job.failed and not job.is_complete
        client.run_stripe(job, f"127.0.0.1:{survivor.port}", 2)  # the next round: the chunks left
        assert job.is_complete and bytes(job.buffer) == data
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        client.close()
        survivor.close()


def test_transfer_over_mutual_tls(stores, servers, tmp_path, monkeypatch):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    paths = {tls.ENV_CERT: str(tmp_path / "n.pem"), tls.ENV_KEY: str(tmp_path / "n.key"),
             tls.ENV_CA: str(tmp_path / "ca.pem")}
    cert.private_key_and_cert_chain_pem.write_to_path(paths[tls.ENV_CERT])
    cert.private_key_pem.write_to_path(paths[tls.ENV_KEY])
    ca.cert_pem.write_to_path(paths[tls.ENV_CA])
    for name, value in paths.items():
        monkeypatch.setenv(name, value)
    store = stores("tls")
    data = os.urandom(2 * CHUNK + 3)
    store.write_bytes(b"l" * 20, data)
    server = servers(store)
    client = TransferClient(TOKEN)
    try:
        job = _fetch(client, [_endpoint(server)], b"l" * 20, len(data))
        assert job.is_complete and bytes(job.buffer) == data
    finally:
        client.close()
    for name in paths:
        monkeypatch.delenv(name)
    plain = TransferClient(TOKEN)  # a client without TLS gets nothing from a TLS port
    try:
        job = _fetch(plain, [_endpoint(server)], b"l" * 20, len(data), conns=1)
        assert not job.is_complete
    finally:
        plain.close()
