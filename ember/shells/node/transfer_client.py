"""The pulling side of object transfer: authenticated connections to other nodes'
transfer ports, and a fetch that writes chunks straight into the destination buffer.

A fetch splits the object into chunks and runs one worker per connection (several per
source, several sources): each keeps ``depth`` requests in flight on its connection and
``recv_into``s every payload at its offset in the destination's writable mapping, so no
byte is copied in Python.  Workers take chunks from one shared queue (fast connections
do more); a worker whose source fails puts its outstanding chunks back and stops, and the
others (or the next round, with the sources left) take them.  Blocking sockets, called
from threads: the kernel copies release the GIL.
"""
from __future__ import annotations

import collections
import fcntl
import os
import socket
import ssl
import struct
import threading
from typing import Optional

from ember.config import CONFIG
from ember.protocol import auth
from ember.protocol import transfer_wire as W
from ember.shells.node.transfer_server import recv_exact
from ember.shells.wire import tls

__all__ = ["TransferClient", "FetchJob", "SourceFailed", "split_endpoint"]


class SourceFailed(Exception):
    """A source could not serve (connection refused or lost, object not there)."""


def split_endpoint(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)


_STALL_TIMEOUT_S = 30  # a holder that sends nothing for this long (host cut off) fails


def _tune(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", _STALL_TIMEOUT_S, 0))


class _Conn:
    __slots__ = ("endpoint", "sock", "sealer", "opener")

    def __init__(self, endpoint: str, sock: socket.socket, sealer: W.HeaderSealer,
                 opener: W.HeaderSealer) -> None:
        self.endpoint = endpoint
        self.sock = sock
        self.sealer = sealer
        self.opener = opener

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class FetchJob:
    """One object being fetched into ``buffer`` (a writable view of ``total`` bytes), or,
    with ``fd``, spliced from the socket into that file (no mapping: a fresh tmpfs file
    fills about 1.6x faster through the file than through page faults of a mapping)."""

    def __init__(self, object_id: bytes, buffer: Optional[memoryview], total: int, chunk_bytes: int,
                 fd: Optional[int] = None) -> None:
        self.object_id = object_id
        self.buffer = buffer
        self.fd = fd
        self.total = total
        self._lock = threading.Lock()
        self._chunks = collections.deque((off, min(chunk_bytes, total - off))
                                         for off in range(0, total, max(chunk_bytes, 1)))
        self.failed: dict[str, str] = {}
        self.received_bytes = 0
        self.is_sealed = False

    def take(self) -> Optional[tuple[int, int]]:
        with self._lock:
            return self._chunks.popleft() if self._chunks else None

    def put_back(self, chunks: "collections.deque[tuple[int, int]]") -> None:
        with self._lock:
            self._chunks.extendleft(reversed(chunks))

    def chunk_done(self, nbytes: int) -> None:
        with self._lock:
            self.received_bytes += nbytes

    def fail(self, endpoint: str, reason: str) -> None:
        with self._lock:
            self.failed.setdefault(endpoint, reason)

    @property
    def is_complete(self) -> bool:
        return self.received_bytes == self.total


class TransferClient:
    """Keeps idle authenticated connections per endpoint for reuse."""

    def __init__(self, token: bytes, idle_per_endpoint_max: int = 16) -> None:
        self.token = token
        self.idle_per_endpoint_max = idle_per_endpoint_max
        self._ssl = tls.env_client_context()
        self._idle: dict[str, list[_Conn]] = {}
        self._busy: dict[str, set[_Conn]] = {}   # connections a stripe is using now, by endpoint
        self._lock = threading.Lock()

    @property
    def is_tls(self) -> bool:
        return self._ssl is not None

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    # --- connections -------------------------------------------------------------------
    def _connect(self, endpoint: str) -> _Conn:
        host, port = split_endpoint(endpoint)
        sock = socket.create_connection((host, port), timeout=CONFIG.connect_timeout_s)
        try:
            _tune(sock)
            if self._ssl is not None:
                sock = self._ssl.wrap_socket(sock, server_hostname=host)
            hello = recv_exact(sock, W.HELLO_BYTES)
            if not hello.startswith(W.HELLO_MAGIC):
                raise SourceFailed(f"{endpoint} is not an ember transfer port")
            server_nonce = hello[len(W.HELLO_MAGIC):]
            nonce = os.urandom(W.NONCE_BYTES)
            sock.sendall(auth.client_proof(self.token, server_nonce) + nonce)
            try:
                proof = recv_exact(sock, W.AUTH_OK_BYTES)
            except ConnectionError:
                raise SourceFailed(f"{endpoint} refused the transfer handshake (wrong cluster token?)") from None
            if not auth.verify(auth.server_proof(self.token, nonce), proof):
                raise SourceFailed(f"{endpoint} failed to prove it holds the cluster token")
            sock.settimeout(None)  # blocking for MSG_WAITALL; the kernel's receive timeout stays
        except BaseException:
            sock.close()
            raise
        to_server, to_client = auth.record_keys(self.token, server_nonce, nonce)
        return _Conn(endpoint, sock, W.HeaderSealer(to_server), W.HeaderSealer(to_client))

    def acquire(self, endpoint: str) -> _Conn:
        with self._lock:
            idle = self._idle.get(endpoint)
            conn = idle.pop() if idle else None
        if conn is None:
            conn = self._connect(endpoint)
        with self._lock:
            self._busy.setdefault(endpoint, set()).add(conn)
        return conn

    def _done_with(self, conn: _Conn) -> None:
        with self._lock:
            busy = self._busy.get(conn.endpoint)
            if busy is not None:
                busy.discard(conn)

    def abort(self, endpoint: str) -> None:
        """The holder at ``endpoint`` was declared dead: its connections could hang (a partition) until
        the stall timeout, so shut them down now; the stripes reading them fail over to other holders."""
        self.forget(endpoint)
        with self._lock:
            busy = list(self._busy.pop(endpoint, ()))
        for conn in busy:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def release(self, conn: _Conn) -> None:
        self._done_with(conn)
        with self._lock:
            idle = self._idle.setdefault(conn.endpoint, [])
            if len(idle) < self.idle_per_endpoint_max:
                idle.append(conn)
                return
        conn.close()

    def forget(self, endpoint: str) -> None:
        with self._lock:
            conns = self._idle.pop(endpoint, [])
        for conn in conns:
            conn.close()

    # --- requests ----------------------------------------------------------------------
    def size_of(self, endpoint: str, object_id: bytes) -> Optional[int]:
        """The object's size at ``endpoint`` (a zero-length request), or None if not there."""
        conn = self.acquire(endpoint)
        try:
            conn.sock.sendall(W.pack_request(conn.sealer, object_id, 0, 0))
            status, total, _, _ = W.unpack_response(conn.opener, recv_exact(conn.sock, W.RESPONSE_BYTES))
        except BaseException:
            self._done_with(conn)
            conn.close()
            raise
        self.release(conn)
        return total if status == W.STATUS_OK else None

    def run_stripe(self, job: FetchJob, endpoint: str, depth: int) -> None:
        """One worker: fetch chunks of ``job`` from ``endpoint`` until none are left."""
        try:
            conn = self.acquire(endpoint)
        except (OSError, SourceFailed, W.ProtocolError, ssl.SSLError) as exc:
            job.fail(endpoint, f"{type(exc).__name__}: {exc}")
            return
        outstanding: collections.deque[tuple[int, int]] = collections.deque()
        try:
            while True:
                while len(outstanding) < depth:
                    chunk = job.take()
                    if chunk is None:
                        break
                    outstanding.append(chunk)
                    conn.sock.sendall(W.pack_request(conn.sealer, job.object_id, chunk[0], chunk[1]))
                if not outstanding:
                    break
                self._receive(conn, job, *outstanding[0])
                outstanding.popleft()
        except (OSError, SourceFailed, W.ProtocolError, ssl.SSLError) as exc:
            job.put_back(outstanding)
            job.fail(endpoint, f"{type(exc).__name__}: {exc}")
            self._done_with(conn)
            conn.close()
            self.forget(endpoint)
            return
        self.release(conn)

    def _receive(self, conn: _Conn, job: FetchJob, offset: int, length: int) -> None:
        status, total, r_offset, r_length = W.unpack_response(conn.opener,
                                                              recv_exact(conn.sock, W.RESPONSE_BYTES))
        if status == W.STATUS_NOT_FOUND:
            raise SourceFailed(f"{conn.endpoint} does not hold the object")
        if status != W.STATUS_OK or total != job.total or (r_offset, r_length) != (offset, length):
            raise SourceFailed(f"{conn.endpoint} answered status {status}, {total} bytes at "
                               f"[{r_offset}, +{r_length}) for [{offset}, +{length}) of {job.total}")
        if job.fd is not None and not isinstance(conn.sock, ssl.SSLSocket):
            _splice_into(conn, job.fd, offset, length)
            job.chunk_done(length)
            return
        assert job.buffer is not None
        view = job.buffer[offset:offset + length]
        flags = 0 if isinstance(conn.sock, ssl.SSLSocket) else socket.MSG_WAITALL
        try:
            got = 0
            while got < length:  # MSG_WAITALL: one syscall (one GIL release) per chunk
                n = conn.sock.recv_into(view[got:], 0, flags)
                if n == 0:
                    raise ConnectionError(f"{conn.endpoint} closed the connection mid-chunk")
                got += n
        finally:
            view.release()
        job.chunk_done(length)


_PIPE_BYTES = 1024 * 1024
_F_SETPIPE_SZ = 1031
_F_GETPIPE_SZ = 1032
_pipes = threading.local()


def _thread_pipe() -> tuple[int, int, int]:
    """This thread's pipe for splicing (read end, write end, capacity in bytes)."""
    pipe = getattr(_pipes, "pipe", None)
    if pipe is None:
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        try:
            fcntl.fcntl(write_fd, _F_SETPIPE_SZ, _PIPE_BYTES)
        except OSError:
            pass  # the default size (64 KiB) still works
        pipe = (read_fd, write_fd, fcntl.fcntl(write_fd, _F_GETPIPE_SZ))
        _pipes.pipe = pipe
    return pipe


def _splice_into(conn: _Conn, fd: int, offset: int, length: int) -> None:
    """Move ``length`` bytes from the socket to ``fd`` at ``offset`` through a pipe: the
    kernel copies socket pages into the file's pages; nothing passes through Python."""
    read_fd, write_fd, capacity = _thread_pipe()
    sock_fd = conn.sock.fileno()
    left = length
    while left:
        moved = os.splice(sock_fd, write_fd, min(left, capacity))
        if moved == 0:
            raise ConnectionError(f"{conn.endpoint} closed the connection mid-chunk")
        done = 0
        while done < moved:
            done += os.splice(read_fd, fd, moved - done, offset_dst=offset + done)
        offset += moved
        left -= moved
