"""What this machine allows, measured next to the ember/Ray rows.

A runtime cannot move bytes faster than memcpy, fill fresh shared memory faster than
the kernel can hand out pages, or answer a call faster than one socket round trip.
These numbers put the benchmark rows in context:

- ``memcpy_gb_s``: numpy copy of an already-touched array into another one;
- ``shm_first_touch_gb_s``: copy into freshly mapped /dev/shm pages (page faults
  included), which is what a put into a new shared-memory object pays;
- ``unix_socket_rtt_us``, ``tcp_loopback_rtt_us``: 64-byte ping-pong between two
  processes over a Unix socket pair and loopback TCP (TCP_NODELAY);
- ``tcp_loopback_gb_s``: one loopback TCP stream between two processes, received into a
  warm buffer (the best of three 1 GiB runs);
- ``asyncio_tcp_rtt_us`` (and ``uvloop_tcp_rtt_us`` when uvloop is installed): the
  same ping-pong with an asyncio client and an asyncio echo server.

Round trips report the best of three runs, copies the best of several: other load on
the machine only ever makes them slower. Every helper process is started here, talks only over loopback, runs a bounded number
of round trips and is joined (or terminated) before the function returns.

    python benchmarks/machine_limits.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import mmap
import multiprocessing
import os
import socket
import tempfile
import time
from typing import Any, Callable

GB = 1e9
MESSAGE_BYTES = 64
_FORK = multiprocessing.get_context("fork")


def memcpy_gb_s(size_bytes: int, repeats: int = 5) -> float:
    import numpy as np

    source = np.ones(size_bytes, dtype=np.uint8)
    target = np.zeros(size_bytes, dtype=np.uint8)
    target[:] = 0  # touch every page before timing
    best_s = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(target, source)
        best_s = min(best_s, time.perf_counter() - start)
    return size_bytes / GB / best_s


def shm_first_touch_gb_s(size_bytes: int, repeats: int = 3) -> float:
    import numpy as np

    source = np.ones(size_bytes, dtype=np.uint8)
    folder = "/dev/shm" if os.path.isdir("/dev/shm") else None
    best_s = float("inf")
    for _ in range(repeats):
        fd, path = tempfile.mkstemp(prefix="ember-bench-", dir=folder)
        try:
            os.ftruncate(fd, size_bytes)
            with mmap.mmap(fd, size_bytes) as mapped:
                view = np.frombuffer(mapped, dtype=np.uint8)
                start = time.perf_counter()
                view[:] = source
                best_s = min(best_s, time.perf_counter() - start)
                del view
        finally:
            os.close(fd)
            os.unlink(path)
    return size_bytes / GB / best_s


def _echo_blocking(sock: socket.socket, round_trips: int) -> None:
    for _ in range(round_trips):
        data = _recv_exactly(sock, MESSAGE_BYTES)
        sock.sendall(data)
    sock.close()


def _recv_exactly(sock: socket.socket, size_bytes: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size_bytes:
        chunk = sock.recv(size_bytes - len(chunks))
        if not chunk:
            raise ConnectionError("peer closed during ping-pong")
        chunks += chunk
    return bytes(chunks)


def _ping_pong_us(sock: socket.socket, round_trips: int) -> float:
    message = b"x" * MESSAGE_BYTES
    start = time.perf_counter()
    for _ in range(round_trips):
        sock.sendall(message)
        _recv_exactly(sock, MESSAGE_BYTES)
    return (time.perf_counter() - start) / round_trips * 1e6


def _with_helper(target: Callable[..., None], args: tuple[Any, ...], body: Callable[[], float]) -> float:
    helper = _FORK.Process(target=target, args=args, daemon=True)
    helper.start()
    try:
        return body()
    finally:
        helper.join(timeout=10)
        if helper.is_alive():
            helper.terminate()
            helper.join(timeout=5)


def unix_socket_rtt_us(round_trips: int) -> float:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours:
        return _with_helper(
            _echo_blocking, (theirs, round_trips), lambda: _ping_pong_us(ours, round_trips)
        )


def _accept_and_echo(listener: socket.socket, round_trips: int) -> None:
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    _echo_blocking(conn, round_trips)


def tcp_loopback_rtt_us(round_trips: int) -> float:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def body() -> float:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return _ping_pong_us(client, round_trips)

    with listener:
        return _with_helper(_accept_and_echo, (listener, round_trips), body)


def _asyncio_echo_server(listener: socket.socket, round_trips: int, use_uvloop: bool) -> None:
    async def serve() -> None:
        done = asyncio.Event()

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for _ in range(round_trips):
                writer.write(await reader.readexactly(MESSAGE_BYTES))
            await writer.drain()
            writer.close()
            done.set()

        server = await asyncio.start_server(on_client, sock=listener)
        async with server:
            await asyncio.wait_for(done.wait(), timeout=120)

    _run_loop(serve(), use_uvloop)


def _run_loop(coro: Any, use_uvloop: bool) -> Any:
    if use_uvloop:
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def asyncio_tcp_rtt_us(round_trips: int, use_uvloop: bool = False) -> float:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    async def client() -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        message = b"x" * MESSAGE_BYTES
        start = time.perf_counter()
        for _ in range(round_trips):
            writer.write(message)
            await reader.readexactly(MESSAGE_BYTES)
        elapsed_s = time.perf_counter() - start
        writer.close()
        return elapsed_s / round_trips * 1e6

    with listener:
        return _with_helper(
            _asyncio_echo_server,
            (listener, round_trips, use_uvloop),
            lambda: float(_run_loop(client(), use_uvloop)),
        )


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


_STREAM_BUFFER_BYTES = 16 * 1024 * 1024


def _stream_out(listener: socket.socket, total_bytes: int) -> None:
    conn, _ = listener.accept()
    data = memoryview(bytearray(os.urandom(1024)) * (_STREAM_BUFFER_BYTES // 1024))
    with conn:
        sent = 0
        while sent < total_bytes:
            piece = data[: min(_STREAM_BUFFER_BYTES, total_bytes - sent)]
            conn.sendall(piece)
            sent += len(piece)


def tcp_loopback_gb_s(total_bytes: int) -> float:
    """One TCP stream over loopback between two processes, received into a warm buffer:
    what one connection carries when neither end copies in Python nor touches fresh pages."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    sink = bytearray(_STREAM_BUFFER_BYTES)
    view = memoryview(sink)
    view[:] = b"\x01" * len(sink)

    def body() -> float:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as client:
            got = 0
            start = time.perf_counter()
            while got < total_bytes:
                n = client.recv_into(view)
                if n == 0:
                    break
                got += n
            took_s = time.perf_counter() - start
        return got / took_s / GB

    with listener:
        return _with_helper(_stream_out, (listener, total_bytes), body)


def measure(is_quick: bool) -> dict[str, float]:
    """Every limit; ``is_quick`` copies 256 MiB instead of 1 GiB and does fewer round trips."""
    copy_bytes = (256 if is_quick else 1024) * 1024 * 1024
    round_trips = 5_000 if is_quick else 20_000
    limits = {
        "memcpy_gb_s": memcpy_gb_s(copy_bytes),
        "shm_first_touch_gb_s": shm_first_touch_gb_s(copy_bytes),
        "unix_socket_rtt_us": _best_of(unix_socket_rtt_us, round_trips),
        "tcp_loopback_rtt_us": _best_of(tcp_loopback_rtt_us, round_trips),
        "asyncio_tcp_rtt_us": _best_of(asyncio_tcp_rtt_us, round_trips),
        "tcp_loopback_gb_s": max(tcp_loopback_gb_s(copy_bytes) for _ in range(3)),
    }
    if _has_uvloop():
        limits["uvloop_tcp_rtt_us"] = _best_of(
            lambda n: asyncio_tcp_rtt_us(n, use_uvloop=True), round_trips
        )
    return limits


def _best_of(measure_us: Callable[[int], float], round_trips: int, trials: int = 3) -> float:
    """The lowest mean round trip of ``trials`` runs (a shared machine only adds delay)."""
    return min(measure_us(max(1, round_trips // trials)) for _ in range(trials))


UNITS = {
    "memcpy_gb_s": "GB/s",
    "shm_first_touch_gb_s": "GB/s",
    "unix_socket_rtt_us": "us",
    "tcp_loopback_rtt_us": "us",
    "asyncio_tcp_rtt_us": "us",
    "uvloop_tcp_rtt_us": "us",
    "tcp_loopback_gb_s": "GB/s",
}


def main() -> None:
    p = argparse.ArgumentParser(description="measure this machine's limits")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", dest="json_path", default=None)
    args = p.parse_args()
    limits = measure(args.quick)
    for name, value in limits.items():
        print(f"{name:<28} {value:>10.2f}  {UNITS[name]}")
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as out:
            json.dump(limits, out, indent=2)


if __name__ == "__main__":
    main()
