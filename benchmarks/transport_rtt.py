"""Round-trip time of the transports ember could use, measured on this machine.

Each case ping-pongs a 100-byte framed message between two processes N times and
reports the median of 5 runs in microseconds.  Run: python benchmarks/transport_rtt.py
(pyzmq is optional and only used here, if installed).
"""
from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import socket
import statistics
import struct
import sys
import tempfile
import time

N = 5000
PAYLOAD = b"x" * 100


def _frame(data: bytes) -> bytes:
    return struct.pack("<I", len(data)) + data


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError
        buf += chunk
    return buf


def _echo_blocking(family: int, addr: object, ready: mp.Event) -> None:
    srv = socket.socket(family, socket.SOCK_STREAM)
    srv.bind(addr)
    srv.listen(1)
    ready.set()
    conn, _ = srv.accept()
    if family == socket.AF_INET:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            n = struct.unpack("<I", _recv_exact(conn, 4))[0]
            conn.sendall(_frame(_recv_exact(conn, n)))
    except ConnectionError:
        pass


def blocking_rtt(family: int) -> float:
    if family == socket.AF_UNIX:
        addr: object = os.path.join(tempfile.mkdtemp(), "s")
    else:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        addr = s.getsockname()
        s.close()
    ready = mp.Event()
    p = mp.Process(target=_echo_blocking, args=(family, addr, ready))
    p.start()
    ready.wait()
    c = socket.socket(family, socket.SOCK_STREAM)
    c.connect(addr)
    if family == socket.AF_INET:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t = time.perf_counter()
    for _ in range(N):
        c.sendall(_frame(PAYLOAD))
        n = struct.unpack("<I", _recv_exact(c, 4))[0]
        _recv_exact(c, n)
    dt = time.perf_counter() - t
    c.close()
    p.join()
    return dt / N * 1e6


def _asyncio_server(port_q: mp.Queue, use_uvloop: bool) -> None:
    if use_uvloop:
        import uvloop
        uvloop.install()

    class Echo(asyncio.Protocol):
        def connection_made(self, t: asyncio.BaseTransport) -> None:
            self.t = t
            t.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def data_received(self, data: bytes) -> None:
            self.t.write(data)

        def connection_lost(self, exc: object) -> None:
            asyncio.get_event_loop().stop()

    loop = asyncio.new_event_loop()
    srv = loop.run_until_complete(loop.create_server(Echo, "127.0.0.1", 0))
    port_q.put(srv.sockets[0].getsockname()[1])
    loop.run_forever()


def asyncio_rtt(use_uvloop: bool) -> float:
    q: mp.Queue = mp.Queue()
    p = mp.Process(target=_asyncio_server, args=(q, use_uvloop))
    p.start()
    port = q.get()
    if use_uvloop:
        import uvloop
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()

    async def run() -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t = time.perf_counter()
        for _ in range(N):
            writer.write(_frame(PAYLOAD))
            n = struct.unpack("<I", await reader.readexactly(4))[0]
            await reader.readexactly(n)
        dt = time.perf_counter() - t
        writer.close()
        return dt

    dt = loop.run_until_complete(run())
    loop.close()
    p.join(5)
    return dt / N * 1e6


def _zmq_server(port_q: mp.Queue) -> None:
    import zmq
    ctx = zmq.Context()
    s = ctx.socket(zmq.REP)
    port = s.bind_to_random_port("tcp://127.0.0.1")
    port_q.put(port)
    for _ in range(N):
        s.send(s.recv())


def zmq_rtt() -> float:
    import zmq
    q: mp.Queue = mp.Queue()
    p = mp.Process(target=_zmq_server, args=(q,))
    p.start()
    port = q.get()
    s = zmq.Context().socket(zmq.REQ)
    s.connect(f"tcp://127.0.0.1:{port}")
    t = time.perf_counter()
    for _ in range(N):
        s.send(PAYLOAD)
        s.recv()
    dt = time.perf_counter() - t
    p.join()
    return dt / N * 1e6


def main() -> None:
    cases = {
        "unix socket, blocking": lambda: blocking_rtt(socket.AF_UNIX),
        "loopback TCP, blocking": lambda: blocking_rtt(socket.AF_INET),
        "asyncio TCP (default loop)": lambda: asyncio_rtt(False),
        "asyncio TCP (uvloop)": lambda: asyncio_rtt(True),
    }
    try:
        import zmq  # noqa: F401
        cases["pyzmq REQ/REP TCP"] = zmq_rtt
    except ImportError:
        pass
    print(f"{'transport':32} {'median RTT us':>14}  (5 runs x {N} round trips)")
    for name, fn in cases.items():
        runs = [fn() for _ in range(5)]
        print(f"{name:32} {statistics.median(runs):14.1f}")


if __name__ == "__main__":
    sys.exit(main())
