"""A node daemon's transfer port: serves object bytes to other nodes at wire speed.

Blocking sockets, one thread per connection (``sendfile`` and ``recv_into`` release the
GIL, so transfers of several peers use several cores beside the daemon's event loop).
The wire is ``ember/protocol/transfer_wire.py``: the cluster's HMAC handshake, then
authenticated request/response headers, payloads sent with ``os.sendfile`` straight from
the object's shared-memory file, or from its spill file when it is on disk only (a spilled
object is served by the node that spilled it without being restored first).  With TLS
the payload goes through the TLS socket from a read-only mapping (memoryview slices).
"""
from __future__ import annotations

import logging
import mmap
import os
import socket
import ssl
import threading
from typing import Callable, Optional

from ember.config import CONFIG
from ember.protocol import auth
from ember.protocol import transfer_wire as W
from ember.shells.shared.shm_store import ShmStore
from ember.shells.wire import tls

log = logging.getLogger("ember.transfer")

__all__ = ["TransferServer", "recv_exact", "CONNECTIONS_MAX"]

CONNECTIONS_MAX = 512


def recv_exact(sock: socket.socket, nbytes: int) -> bytes:
    buf = bytearray(nbytes)
    view = memoryview(buf)
    got = 0
    while got < nbytes:
        n = sock.recv_into(view[got:])
        if n == 0:
            raise ConnectionError("transfer connection closed by the peer")
        got += n
    return bytes(buf)


class _Source:
    """The open file of the object a connection is serving (kept across its chunks)."""

    def __init__(self, object_id: bytes, fd: int) -> None:
        self.object_id = object_id
        self.fd = fd
        self.size = os.fstat(fd).st_size
        self._map: Optional[mmap.mmap] = None

    def view(self) -> memoryview:
        if self._map is None:
            self._map = mmap.mmap(self.fd, self.size, access=mmap.ACCESS_READ)
        return memoryview(self._map)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
        os.close(self.fd)


class TransferServer:
    """Listens on ``host``:``port`` (0: any free port); ``on_served(object_id, nbytes)`` is
    called from serving threads after an object's first chunk (the daemon posts it to its loop)."""

    def __init__(self, host: str, token: bytes, store: ShmStore, spill_dir: str,
                 on_served: Optional[Callable[[bytes, int], None]] = None, port: int = 0) -> None:
        self.token = token
        self.store = store
        self.spill_dir = spill_dir
        self.on_served = on_served
        self._ssl = tls.env_server_context()
        self._listener = socket.create_server((host, port), backlog=128)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._closed = False
        self.bytes_served = 0
        self._thread = threading.Thread(target=self._accept_loop, name="ember-transfer-accept", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._closed = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for sock in conns:
            _close(sock)

    # --- connections -------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                sock, peer = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if len(self._conns) >= CONNECTIONS_MAX:
                    log.warning("refusing transfer connection from %s: %d open", peer, CONNECTIONS_MAX)
                    _close(sock)
                    continue
                self._conns.add(sock)
            threading.Thread(target=self._serve_conn, args=(sock, peer), name="ember-transfer-serve",
                             daemon=True).start()

    def _serve_conn(self, raw: socket.socket, peer: object) -> None:
        sock = raw
        source: Optional[_Source] = None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
            sock.settimeout(CONFIG.handshake_timeout_s)
            if self._ssl is not None:
                sock = self._ssl.wrap_socket(raw, server_side=True)
            opener, sealer = self._handshake(sock)
            sock.settimeout(None)
            while not self._closed:
                header = _recv_or_eof(sock, W.REQUEST_BYTES)
                if header is None:
                    return
                object_id, offset, length = W.unpack_request(opener, header)
                source = self._serve_one(sock, sealer, source, object_id, offset, length)
        except (ConnectionError, OSError, W.ProtocolError, ssl.SSLError) as exc:
            if not self._closed:
                log.info("transfer connection from %s closed: %s", peer, exc)
        finally:
            if source is not None:
                source.close()
            with self._lock:
                self._conns.discard(raw)
            _close(sock)

    def _handshake(self, sock: socket.socket) -> tuple[W.HeaderSealer, W.HeaderSealer]:
        nonce = os.urandom(W.NONCE_BYTES)
        sock.sendall(W.HELLO_MAGIC + nonce)
        answer = recv_exact(sock, W.AUTH_BYTES)
        proof, client_nonce = answer[:W.PROOF_BYTES], answer[W.PROOF_BYTES:]
        if not auth.verify(auth.client_proof(self.token, nonce), proof):
            raise ConnectionError("transfer handshake refused: wrong cluster token")
        sock.sendall(auth.server_proof(self.token, client_nonce))
        to_server, to_client = auth.record_keys(self.token, nonce, client_nonce)
        return W.HeaderSealer(to_server), W.HeaderSealer(to_client)

    # --- serving -----------------------------------------------------------------------
    def _open(self, object_id: bytes) -> Optional[_Source]:
        fd = self.store.open_fd(object_id)
        if fd is None:  # on disk only: serve the spill file (never recycled, only deleted)
            try:
                fd = os.open(os.path.join(self.spill_dir, object_id.hex()), os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
        return _Source(object_id, fd)

    def _serve_one(self, sock: socket.socket, sealer: W.HeaderSealer, source: Optional[_Source],
                   object_id: bytes, offset: int, length: int) -> Optional[_Source]:
        if source is not None and source.object_id != object_id:
            source.close()
            source = None
        if source is None:
            source = self._open(object_id)
        if source is None:
            sock.sendall(W.pack_response(sealer, W.STATUS_NOT_FOUND, 0, offset, 0))
            return None
        total = source.size
        if offset > total or (length and offset + length > total):
            sock.sendall(W.pack_response(sealer, W.STATUS_BAD_RANGE, total, offset, 0))
            return source
        sock.sendall(W.pack_response(sealer, W.STATUS_OK, total, offset, length))
        if length:
            self._send_payload(sock, source, offset, length)
            self.bytes_served += length
            if self.on_served is not None and offset == 0:  # once per object read: its LRU place
                self.on_served(object_id, length)
        if offset + length >= total:  # its last chunk: let the file be recycled
            source.close()
            return None
        return source

    def _send_payload(self, sock: socket.socket, source: _Source, offset: int, length: int) -> None:
        if isinstance(sock, ssl.SSLSocket):
            view = source.view()
            try:
                sock.sendall(view[offset:offset + length])
            finally:
                view.release()
            return
        end = offset + length
        while offset < end:
            sent = os.sendfile(sock.fileno(), source.fd, offset, end - offset)
            if sent == 0:
                raise ConnectionError("the object's file is shorter than it was")
            offset += sent


def _recv_or_eof(sock: socket.socket, nbytes: int) -> Optional[bytes]:
    first = sock.recv(nbytes)
    if not first:
        return None
    if len(first) == nbytes:
        return first
    return first + recv_exact(sock, nbytes - len(first))


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
