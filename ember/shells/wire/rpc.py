"""Connections between ember processes: framed msgpack over TCP (or TLS), authenticated by HMAC.

One Connection per peer pair carries requests (with ids, answered by replies) and
one-way messages in both directions.  Writes made in one event-loop iteration are
coalesced into one socket write, sealed as one MAC'd record bound to the handshake.
A listener keeps at most ``CONFIG.handshake_pending_max`` connections in the handshake
(the oldest goes first) and closes any that has not authenticated within
``CONFIG.handshake_timeout_s``; refused connections are logged at a limited rate.  A peer that fails the handshake or sends a malformed
frame is logged and disconnected; the server keeps serving everyone else.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import time
from typing import Any, Optional, Protocol

from ember.config import CONFIG
from ember.protocol import auth, codec, records
from ember.protocol import messages as m
from ember.protocol.admission import HandshakeAdmission, RefusalLog
from ember.protocol.framing import DEFAULT_MAX_FRAME_BYTES, Framer, ProtocolError, frame_header
from ember.shells.wire import tls

log = logging.getLogger("ember.rpc")

REFUSAL_LOG_INTERVAL_S = 10.0
_RECORD_MAX_BYTES = records.record_max_bytes(DEFAULT_MAX_FRAME_BYTES)


class RpcError(Exception):
    """The peer answered a request with an error."""

    def __init__(self, kind: str, message: str, data: Optional[bytes] = None) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.data = data


class ConnectionLost(ConnectionError):
    """The connection closed before a reply arrived."""


class TokenRefused(ConnectionLost):
    """The server closed the connection on our authentication answer: it holds another token."""


class Handler(Protocol):
    def handle_message(self, conn: "Connection", kind: int, request_id: int, msg: Any) -> None: ...

    def connection_lost(self, conn: "Connection") -> None: ...


class _Listener:
    """What the connections of one listening socket share: the handshake admission."""

    def __init__(self, pending_max: int) -> None:
        self.admission = HandshakeAdmission(pending_max)
        self.pending: dict[int, "Connection"] = {}


_refusals = RefusalLog(REFUSAL_LOG_INTERVAL_S)
_conn_ids = itertools.count(1)


def _log_refused(peer: str, reason: str) -> None:
    line = _refusals.refused(f"refused connection from {peer}: {reason}", time.monotonic())
    if line is not None:
        log.warning("%s", line)


class Connection(asyncio.Protocol):
    """One peer connection.  Until the handshake ends, only handshake frames of at most
    ``codec.HANDSHAKE_FRAME_MAX_BYTES`` are read, by the strict handshake decoder; after it,
    everything travels in records sealed with keys bound to the handshake (records.py)."""

    def __init__(self, handler: Handler, token: bytes, *, is_server: bool, peer_kind: str = "",
                 listener: Optional[_Listener] = None) -> None:
        self._handler = handler
        self._token = token
        self._is_server = is_server
        self._listener = listener
        self._id = next(_conn_ids)
        self.peer_kind = peer_kind
        self._framer = Framer(codec.HANDSHAKE_FRAME_MAX_BYTES)
        self._transport: Optional[asyncio.Transport] = None
        self._loop = asyncio.get_running_loop()
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 1
        self._nonce = os.urandom(auth.NONCE_BYTES)
        self._server_nonce = b""
        self._authed = False
        self._sealer: Optional[records.Sealer] = None
        self._opener: Optional[records.Opener] = None
        self._held: list[bytes] = []  # frames queued until the handshake ends
        self.ready: asyncio.Future[None] = self._loop.create_future()
        self.closed = False
        self.peer = ""
        self.state: dict[str, Any] = {}  # per-connection facts the owner attaches
        self._answered = False  # a client that sent its proof (the only frame it writes unsealed)

    # --- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        if self._is_server:
            if self._listener is not None:
                self._listener.pending[self._id] = self
                for old in self._listener.admission.opened(self._id):
                    conn = self._listener.pending.pop(old, None)
                    if conn is not None:
                        _log_refused(conn.peer, f"more than {self._listener.admission.pending_max} "
                                                "connections in the handshake; closing the oldest")
                        conn.close()
            self._write_now(codec.encode(codec.KIND_ONEWAY, 0, m.Challenge(self._nonce)))
        self._loop.call_later(CONFIG.handshake_timeout_s, self._handshake_deadline)

    def data_received(self, data: bytes) -> None:
        self._framer.feed(data)
        try:
            while not self.closed:
                frame = self._framer.next_frame()
                if frame is None:
                    return
                if not self._authed:
                    self._handshake(codec.decode_handshake(frame))
                    continue
                assert self._opener is not None
                for payload in self._opener.open(frame):
                    kind, request_id, msg = codec.decode(payload)
                    self._dispatch(kind, request_id, msg)
        except ProtocolError as exc:
            if self._authed:
                log.warning("closing connection from %s: %s", self.peer, exc)
            else:
                _log_refused(self.peer, str(exc))
            self.close()

    def _dispatch(self, kind: int, request_id: int, msg: Any) -> None:
        if kind == codec.KIND_REPLY or kind == codec.KIND_ERROR:
            fut = self._pending.pop(request_id, None)
            if fut is not None and not fut.done():
                if kind == codec.KIND_REPLY:
                    fut.set_result(msg)
                else:
                    fut.set_exception(RpcError(msg.kind, msg.message, msg.data))
            return
        self._handler.handle_message(self, kind, request_id, msg)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.closed = True
        self._leave_admission()
        err = ConnectionLost(f"connection to {self.peer} lost")
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(err)
        self._pending.clear()
        if not self.ready.done():
            self.ready.set_exception(self._handshake_error(err))
            self.ready.exception()  # mark retrieved
        try:
            self._handler.connection_lost(self)
        except Exception:
            log.exception("connection_lost handler failed")

    def _handshake_error(self, err: ConnectionLost) -> ConnectionLost:
        """A server that closes on the client's answer refused its token: say so."""
        if self._answered and not self._is_server and not self._authed:
            return TokenRefused(f"{self.peer} refused the cluster token (it closed the connection on the "
                                "authentication answer)")
        return err

    # --- handshake ------------------------------------------------------------------------
    def _handshake(self, msg: Any) -> None:
        if self._is_server and isinstance(msg, m.AuthResponse):
            if not auth.verify(auth.client_proof(self._token, self._nonce), msg.proof):
                raise ProtocolError("authentication failed: wrong cluster token")
            self.peer_kind = msg.peer_kind
            self._write_now(codec.encode(codec.KIND_ONEWAY, 0, m.AuthOk(auth.server_proof(self._token, msg.nonce))))
            to_server, to_client = auth.record_keys(self._token, self._nonce, msg.nonce)
            self._authenticated(seal_key=to_client, open_key=to_server)
        elif not self._is_server and isinstance(msg, m.Challenge) and not self._server_nonce:
            self._server_nonce = msg.nonce
            proof = auth.client_proof(self._token, msg.nonce)
            self._write_now(codec.encode(codec.KIND_ONEWAY, 0, m.AuthResponse(proof, self._nonce, self.peer_kind)))
        elif not self._is_server and isinstance(msg, m.AuthOk) and self._server_nonce:
            if not auth.verify(auth.server_proof(self._token, self._nonce), msg.proof):
                raise ProtocolError("server failed to prove it holds the cluster token")
            to_server, to_client = auth.record_keys(self._token, self._server_nonce, self._nonce)
            self._authenticated(seal_key=to_server, open_key=to_client)
        else:
            raise ProtocolError(f"unexpected {type(msg).__name__} before authentication")

    def _authenticated(self, *, seal_key: bytes, open_key: bytes) -> None:
        self._authed = True
        self._leave_admission()
        self._sealer = records.Sealer(seal_key, _RECORD_MAX_BYTES)
        self._opener = records.Opener(open_key)
        self._framer.max_frame_bytes = _RECORD_MAX_BYTES
        self._framer.trailer_bytes = records.MAC_BYTES
        for frame in self._held:
            self._write(frame)
        self._held.clear()
        self.ready.set_result(None)

    def _leave_admission(self) -> None:
        if self._listener is not None:
            self._listener.admission.finished(self._id)
            self._listener.pending.pop(self._id, None)

    def _handshake_deadline(self) -> None:
        if not self._authed and not self.closed:
            _log_refused(self.peer, f"no authentication within {CONFIG.handshake_timeout_s}s")
            self.close()

    # --- writing --------------------------------------------------------------------------
    def _write_now(self, payload: bytes) -> None:
        self._answered = True
        if self._transport is not None and not self.closed:
            self._transport.write(frame_header(len(payload)) + payload)

    def _write(self, payload: bytes) -> None:
        if not self._authed:
            self._held.append(payload)
            return
        self._out.append(frame_header(len(payload)))
        self._out.append(payload)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self._transport is not None and not self.closed:
            assert self._sealer is not None
            self._transport.write(self._sealer.seal(self._out))
        self._out = []

    def send(self, msg: Any) -> None:
        """A one-way message."""
        if self.closed:
            raise ConnectionLost(f"connection to {self.peer} is closed")
        self._write(codec.encode(codec.KIND_ONEWAY, 0, msg))

    def request_future(self, msg: Any) -> "asyncio.Future[Any]":
        if self.closed:
            raise ConnectionLost(f"connection to {self.peer} is closed")
        request_id = self._next_id
        self._next_id += 1
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._pending[request_id] = fut
        self._write(codec.encode(codec.KIND_REQUEST, request_id, msg))
        return fut

    async def request(self, msg: Any, timeout_s: Optional[float] = None) -> Any:
        fut = self.request_future(msg)
        if timeout_s is None:
            return await fut
        async with asyncio.timeout(timeout_s):
            return await fut

    @property
    def pending_count(self) -> int:
        """Requests sent on this connection and not answered yet."""
        return len(self._pending)

    def fail_pending(self, err: BaseException) -> None:
        """Fail every unanswered request with ``err`` (a peer judged lost while its socket is open)."""
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(err)

    def reply(self, request_id: int, msg: Any) -> None:
        if not self.closed:
            self._write(codec.encode(codec.KIND_REPLY, request_id, msg))

    def reply_error(self, request_id: int, kind: str, message: str, data: Optional[bytes] = None) -> None:
        if not self.closed:
            self._write(codec.encode(codec.KIND_ERROR, request_id, m.ErrorReply(kind, message, data)))

    def close(self) -> None:
        if self._transport is not None and not self.closed:
            self._flush()
            self.closed = True
            self._transport.close()

    def abort(self) -> None:
        """Close at once, dropping unsent bytes (a peer that stopped reading never drains them);
        pending requests fail with ConnectionLost."""
        if self._transport is not None and not self.closed:
            self._transport.abort()


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


async def serve(handler: Handler, host: str, port: int, token: bytes) -> asyncio.AbstractServer:
    """Listen on ``host:port``; TLS when this process's environment names a certificate."""
    loop = asyncio.get_running_loop()
    listener = _Listener(CONFIG.handshake_pending_max)
    ssl_ctx = tls.env_server_context()
    return await loop.create_server(
        lambda: Connection(handler, token, is_server=True, listener=listener), host, port, reuse_address=True,
        ssl=ssl_ctx, ssl_handshake_timeout=CONFIG.handshake_timeout_s if ssl_ctx is not None else None,
    )


_dialer: Optional[tuple[asyncio.AbstractEventLoop, Any]] = None


def set_dialer(loop: Optional[asyncio.AbstractEventLoop], dial: Any) -> None:
    """Route the connections made on ``loop`` through ``dial(address, protocol_factory)``
    (a remote client's tunnel, shells/wire/tunnel.py); None: connect directly again."""
    global _dialer
    _dialer = (loop, dial) if loop is not None else None


async def connect(address: str, token: bytes, handler: Handler, peer_kind: str,
                  timeout_s: float = 10.0, *, direct: bool = False) -> Connection:
    loop = asyncio.get_running_loop()
    host, port = split_address(address)
    dialer = _dialer
    if dialer is not None and not direct and dialer[0] is loop:
        # No timeout of ours: the client server's dial has one and closes the channel, and
        # during a tunnel outage the connection waits for the tunnel (docs/client.md).
        conn = dialer[1](address, lambda: Connection(handler, token, is_server=False, peer_kind=peer_kind))
        await conn.ready
        return conn
    async with asyncio.timeout(timeout_s):
        ssl_ctx = tls.env_client_context()
        _, conn = await loop.create_connection(
            lambda: Connection(handler, token, is_server=False, peer_kind=peer_kind), host, port,
            ssl=ssl_ctx, server_hostname=host if ssl_ctx is not None else None,
        )
        await conn.ready
    return conn


class Peers:
    """One connection per peer address, opened on first use."""

    def __init__(self, token: bytes, handler: Handler, peer_kind: str) -> None:
        self._token = token
        self._handler = handler
        self._peer_kind = peer_kind
        self._conns: dict[str, Connection] = {}
        self._connecting: dict[str, asyncio.Future[Connection]] = {}

    def get_nowait(self, address: str) -> Optional[Connection]:
        conn = self._conns.get(address)
        return conn if conn is not None and not conn.closed else None

    async def get(self, address: str) -> Connection:
        conn = self._conns.get(address)
        if conn is not None and not conn.closed:
            return conn
        fut = self._connecting.get(address)
        if fut is None:
            fut = asyncio.ensure_future(connect(address, self._token, self._handler, self._peer_kind))
            self._connecting[address] = fut
            try:
                conn = await fut
                self._conns[address] = conn
                return conn
            finally:
                self._connecting.pop(address, None)
        return await asyncio.shield(fut)

    def forget(self, conn: Connection) -> None:
        for addr, c in list(self._conns.items()):
            if c is conn:
                del self._conns[addr]

    def close_all(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()


def install_uvloop() -> None:
    try:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover
        pass
