"""The wire against a hostile peer, with real sockets: nothing before the handshake may
cost much or crash a process, and a relay without the token cannot use a connection."""
import asyncio
import socket
import struct

import msgpack
import pytest

import ember
from ember import lifecycle
from ember.config import CONFIG
from ember.protocol import codec
from ember.protocol import messages as m
from ember.protocol.framing import encode_frame, frame_header
from ember.shells.wire import rpc

pytestmark = pytest.mark.timeout(120)


class _Recorder:
    def __init__(self):
        self.seen = []

    def handle_message(self, conn, kind, request_id, msg):
        self.seen.append(msg)
        if kind == codec.KIND_REQUEST:
            conn.reply(request_id, m.Ok())

    def connection_lost(self, conn):
        pass


def _depth_bomb(depth=5000):
    value = msgpack.ExtType(1, msgpack.packb([b"x"]))
    for _ in range(depth):
        value = msgpack.ExtType(1, msgpack.packb([value]))
    return encode_frame(msgpack.packb([codec.KIND_ONEWAY, 0, value]))


def _closed_by_peer(s: socket.socket, timeout_s: float = 20) -> bool:
    s.settimeout(timeout_s)
    try:
        while s.recv(65536):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


@ember.remote
def _worker_address():
    from ember.shells.worker import core_worker
    return core_worker.get_core_worker().address


@ember.remote
def _plus_1(x):
    return x + 1


def test_depth_bomb_before_the_handshake_crashes_no_listener(cluster):
    """Control store, node daemon, this driver and a worker each get a <1 MB depth bomb."""
    from ember.shells.worker import core_worker
    c = lifecycle._local_cluster
    addresses = [c.gcs_address, c.node_address, core_worker.get_core_worker().address,
                 ember.get(_worker_address.remote())]
    for address in addresses:
        with socket.create_connection(rpc.split_address(address), timeout=10) as s:
            s.recv(4096)  # the challenge
            try:
                s.sendall(_depth_bomb())
            except (BrokenPipeError, ConnectionResetError):
                pass  # closed as soon as the header said the frame is too large
            assert _closed_by_peer(s)
    assert ember.get([_plus_1.remote(i) for i in range(4)]) == [1, 2, 3, 4]


async def _serve(handler, token=b"t0ken"):
    server = await rpc.serve(handler, "127.0.0.1", 0, token)
    return server, server.sockets[0].getsockname()[1]


@pytest.fixture
def long_handshake(monkeypatch):
    # Refusals must come from the frame checks, not from the handshake deadline.
    monkeypatch.setattr(CONFIG, "handshake_timeout_s", 60.0, raising=False)
    monkeypatch.setattr(rpc, "HANDSHAKE_TIMEOUT_S", 60.0, raising=False)


@pytest.mark.parametrize("attack", ["large_frame_header", "other_message", "garbage_after_header"])
def test_before_the_handshake_only_a_small_handshake_frame_is_read(long_handshake, attack):
    async def main():
        rec = _Recorder()
        server, port = await _serve(rec)
        loop = asyncio.get_running_loop()

        def probe():
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.recv(4096)
                if attack == "large_frame_header":
                    data = frame_header(64 * 1024 * 1024) + b"\x00" * 65536
                elif attack == "other_message":
                    data = encode_frame(codec.encode(codec.KIND_REQUEST, 1, m.GetNodes()))
                else:
                    data = frame_header(3000) + b"\x00" * 3000
                try:
                    s.sendall(data)
                except (BrokenPipeError, ConnectionResetError):
                    return True
                return _closed_by_peer(s)

        closed = await loop.run_in_executor(None, probe)
        server.close()
        return closed, rec.seen

    closed, seen = asyncio.run(main())
    assert closed and seen == []


def test_idle_connections_past_the_cap_are_closed_and_a_real_client_gets_in(monkeypatch, long_handshake, caplog):
    monkeypatch.setattr(CONFIG, "handshake_pending_max", 4, raising=False)
    caplog.set_level("WARNING", logger="ember.rpc")

    async def main():
        rec = _Recorder()
        server, port = await _serve(rec)
        loop = asyncio.get_running_loop()
        idle = []
        for _ in range(10):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            idle.append(s)
        closed = await loop.run_in_executor(
            None, lambda: [_closed_by_peer(s, 5 if i < 6 else 0.5) for i, s in enumerate(idle)])
        conn = await rpc.connect(f"127.0.0.1:{port}", b"t0ken", _Recorder(), "cli", timeout_s=10)
        reply = await conn.request(m.GetNodes(), timeout_s=10)
        conn.close()
        for s in idle:
            s.close()
        server.close()
        return closed, reply

    closed, reply = asyncio.run(main())
    assert closed[:6] == [True] * 6 and not any(closed[6:])
    assert reply == m.Ok()
    refused = [r for r in caplog.records if "refused connection" in r.getMessage()]
    assert len(refused) <= 1  # six refusals, at most one line (rate-limited)


def test_a_connection_that_does_not_authenticate_in_time_is_closed(monkeypatch):
    monkeypatch.setattr(CONFIG, "handshake_timeout_s", 0.5, raising=False)

    async def main():
        server, port = await _serve(_Recorder())
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        closed = await asyncio.get_running_loop().run_in_executor(None, lambda: _closed_by_peer(s, 8))
        s.close()
        server.close()
        return closed

    assert asyncio.run(main())


# --- relay ----------------------------------------------------------------------------------
async def _relay(target_port: int, inject: bytes):
    """A TCP proxy without the token: forwards a real client's handshake both ways, then, once
    the server's second frame (AuthOk) has gone to the client, writes ``inject`` to the server."""
    done = asyncio.Event()

    async def on_client(c_reader, c_writer):
        s_reader, s_writer = await asyncio.open_connection("127.0.0.1", target_port)

        async def client_to_server():
            while data := await c_reader.read(65536):
                s_writer.write(data)
            s_writer.close()

        async def server_to_client():
            buf = b""
            frames = 0
            while data := await s_reader.read(65536):
                if frames < 2:
                    buf += data
                    while frames < 2 and len(buf) >= 4:
                        (n,) = struct.unpack_from("<I", buf)
                        if len(buf) < 4 + n:
                            break
                        c_writer.write(buf[: 4 + n])
                        buf = buf[4 + n:]
                        frames += 1
                    if frames == 2:
                        await c_writer.drain()
                        s_writer.write(inject)  # the relay's own request, after the handshake
                        done.set()
                        if buf:
                            c_writer.write(buf)
                    continue
                c_writer.write(data)
            c_writer.close()

        await asyncio.gather(client_to_server(), server_to_client(), return_exceptions=True)

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], done


def test_a_relay_without_the_token_cannot_inject_requests_into_a_real_clients_connection(cluster):
    gcs_address = lifecycle._local_cluster.gcs_address
    token = lifecycle._local_cluster.token
    key = b"relay-injected"
    inject = encode_frame(codec.encode(codec.KIND_REQUEST, 4242, m.KvPut("wire-test", key, b"evil", True)))

    async def main():
        relay, relay_port, injected = await _relay(rpc.split_address(gcs_address)[1], inject)
        conn = await rpc.connect(f"127.0.0.1:{relay_port}", token, _Recorder(), "cli", timeout_s=10)
        await asyncio.wait_for(injected.wait(), 10)
        try:
            await conn.request(m.KvGet("wire-test", b"nothing"), timeout_s=10)
        except (rpc.ConnectionLost, TimeoutError):
            pass  # the control store closed the connection that carried the forged frame
        conn.close()
        relay.close()
        direct = await rpc.connect(gcs_address, token, _Recorder(), "cli", timeout_s=10)
        value = (await direct.request(m.KvGet("wire-test", key), timeout_s=10)).value
        direct.close()
        return value

    assert asyncio.run(main()) is None
    assert ember.get(_plus_1.remote(1)) == 2


# --- fuzzing a live server connection (in process, a recording transport) ------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ember.protocol import auth  # noqa: E402


class _Transport:
    def __init__(self):
        self.written = b""
        self.closed = False

    def get_extra_info(self, name, default=None):
        return ("10.0.0.1", 1) if name == "peername" else default

    def write(self, data):
        self.written += data

    def close(self):
        self.closed = True


def _feed(chunks, authenticate):
    """A server Connection fed ``chunks`` (after a valid handshake when ``authenticate``)."""
    async def main():
        rec = _Recorder()
        conn = rpc.Connection(rec, b"t0ken", is_server=True, listener=rpc._Listener(4))
        transport = _Transport()
        conn.connection_made(transport)
        if authenticate:
            nonce = codec.decode_handshake(transport.written[4:]).nonce
            proof = auth.client_proof(b"t0ken", nonce)
            conn.data_received(encode_frame(codec.encode(codec.KIND_ONEWAY, 0, m.AuthResponse(proof, b"c" * 32, "cli"))))
            assert conn.ready.done()
        for chunk in chunks:
            if transport.closed:
                break
            conn.data_received(chunk)
        conn.connection_lost(None)
        return rec.seen, transport.closed

    return asyncio.run(main())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(min_size=1, max_size=700), min_size=1, max_size=4), st.booleans())
def test_fuzz_live_connection_never_serves_unsealed_bytes(chunks, authenticate):
    seen, _ = _feed(chunks, authenticate)
    assert seen == []  # nothing random passes the handshake, or (after it) the record MAC
