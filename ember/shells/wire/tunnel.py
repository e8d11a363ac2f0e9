"""The ember:// tunnel: a remote client's connections, carried over one connection to the head.

A remote client (``ember.init("ember://HOST:10001")``) runs a normal core worker, but every
connection it makes (to the control store, the head's node daemon, workers, other owners)
and every connection made to it is a *channel* of one authenticated ember connection to the
client server on the head (``shells/client/server.py``).  The client only dials out, so it
may sit behind NAT; the server dials the cluster for it and listens on the head for
connections to it.  The channels carry the bytes of ordinary ember connections (their own
token handshake and sealed records, end to end); the tunnel adds numbering so that a
dropped tunnel is replaced without losing or repeating a byte (``logic/client_stream.py``).

``TunnelEnd`` is what both sides share; ``ClientTunnel`` is the client's side, which
reconnects with backoff and gives up when the server's grace period has passed.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Optional

from ember import exceptions as exc
from ember.config import CONFIG
from ember.logic.client_stream import Liveness, ReliableStream
from ember.protocol import messages as m
from ember.shells.wire import rpc

log = logging.getLogger("ember.client")

ACK_EVERY_BYTES = 1 << 20      # acknowledge at least every MiB applied (the sender frees its copy)
RECONNECT_BACKOFF_S = (0.1, 0.2, 0.5, 1.0, 2.0)
CLIENT_PROTOCOL_VERSION = "1"


class ClientSessionError(exc.RaySystemError):
    """The client's session on the cluster ended (or could not start)."""


class TunnelEnd:
    """Sequenced channel messages over a replaceable connection (both sides)."""

    def __init__(self) -> None:
        self.stream = ReliableStream()
        self.conn: Optional[rpc.Connection] = None
        self.liveness = Liveness(time.monotonic())
        self.channels: dict[int, Any] = {}   # channel id -> endpoint (deliver / peer_closed)

    # --- sending ------------------------------------------------------------------------------
    def _sequenced(self, msg: Any, size_bytes: int) -> None:
        self.stream.sent(msg.seq, msg, size_bytes)
        conn = self.conn
        if conn is not None and not conn.closed:
            conn.send(msg)

    def send_open(self, channel_id: int, address: str) -> None:
        self._sequenced(m.ChannelOpen(self.stream.stamp(), channel_id, address), 64)

    def send_data(self, channel_id: int, data: bytes) -> None:
        self._sequenced(m.ChannelData(self.stream.stamp(), channel_id, data), len(data))

    def send_close(self, channel_id: int, reason: str) -> None:
        self._sequenced(m.ChannelClose(self.stream.stamp(), channel_id, reason), 64)

    def send_ping(self) -> None:
        conn = self.conn
        if conn is not None and not conn.closed:
            conn.send(m.TunnelPing(self.stream.ack_sent()))

    def attach(self, conn: rpc.Connection, peer_received_upto: int) -> None:
        """Use ``conn`` from now on; send again what the peer has not applied."""
        self.conn = conn
        for msg in self.stream.resend_after(peer_received_upto):
            conn.send(msg)

    # --- receiving ----------------------------------------------------------------------------
    def on_tunnel_message(self, msg: Any) -> bool:
        """A tunnel message arrived; False when it is not one."""
        self.liveness.heard(time.monotonic())
        kind = type(msg)
        if kind is m.ChannelData:
            if self.stream.accept(msg.seq, len(msg.data)):
                endpoint = self.channels.get(msg.channel_id)
                if endpoint is not None:
                    endpoint.deliver(msg.data)
                if self.stream.received_bytes_unacked > ACK_EVERY_BYTES:
                    self.send_ping()
        elif kind is m.TunnelPing:
            self.stream.acked(msg.received_upto)
        elif kind is m.ChannelOpen:
            if self.stream.accept(msg.seq):
                self.on_open(msg.channel_id, msg.address)
        elif kind is m.ChannelClose:
            if self.stream.accept(msg.seq):
                endpoint = self.channels.pop(msg.channel_id, None)
                if endpoint is not None:
                    endpoint.peer_closed(msg.reason)
        else:
            return False
        return True

    def on_open(self, channel_id: int, address: str) -> None:
        raise NotImplementedError


class ChannelTransport(asyncio.Transport):
    """The client's side of one channel, as the transport of an ``rpc.Connection``."""

    def __init__(self, tunnel: "ClientTunnel", channel_id: int, peer: str, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self._tunnel = tunnel
        self._channel_id = channel_id
        self._peer = peer
        self._protocol = protocol
        self._closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            host, _, port = self._peer.rpartition(":")
            return (host, int(port)) if port.isdigit() else self._peer
        return default

    def write(self, data: Any) -> None:
        if not self._closing:
            self._tunnel.send_data(self._channel_id, bytes(data))

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._tunnel.channels.pop(self._channel_id, None)
            self._tunnel.send_close(self._channel_id, "closed by the client")
            self._tunnel.loop.call_soon(self._protocol.connection_lost, None)

    abort = close

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: Optional[int] = None, low: Optional[int] = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    # --- from the tunnel ----------------------------------------------------------------------
    def deliver(self, data: bytes) -> None:
        if not self._closing:
            self._protocol.data_received(data)

    def peer_closed(self, reason: str) -> None:
        if not self._closing:
            self._closing = True
            self._protocol.connection_lost(ConnectionResetError(reason) if reason else None)


class ClientTunnel(TunnelEnd):
    """The client's tunnel (on its core worker's I/O loop): dials, resumes, pings, gives up."""

    def __init__(self, server_address: str, token: bytes, namespace: str,
                 accept: Callable[[], asyncio.Protocol]) -> None:
        super().__init__()
        self.server_address = server_address
        self.token = token
        self.namespace = namespace
        self.accept = accept                 # protocol for a connection the cluster makes to the client
        self.loop = asyncio.get_running_loop()
        self.session_id = b""
        self.welcome: Optional[m.ClientWelcome] = None
        self.error: Optional[BaseException] = None
        self._next_channel = 0               # the client numbers its channels even, the server odd
        self._reconnecting: Optional[asyncio.Task] = None
        self._joining: Optional[rpc.Connection] = None   # a connection between its hello and welcome
        self._ticker: Optional[asyncio.TimerHandle] = None
        self.is_closed = False
        self.reconnects = 0

    # --- opening --------------------------------------------------------------------------------
    async def open(self) -> m.ClientWelcome:
        welcome = await self._hello(CONFIG.connect_timeout_s)
        self.session_id = welcome.session_id
        self._tick()
        return welcome

    async def _hello(self, timeout_s: float) -> m.ClientWelcome:
        import sys
        from ember import __version__
        conn = await rpc.connect(self.server_address, self.token, self, "client", timeout_s, direct=True)
        self._joining = conn  # what the server resends follows its welcome at once: apply it
        try:
            welcome = await conn.request(m.ClientHello(
                self.session_id, self.stream.received_upto, f"{__version__}/{CLIENT_PROTOCOL_VERSION}",
                f"{sys.version_info[0]}.{sys.version_info[1]}", self.namespace), timeout_s=timeout_s)
        except BaseException:
            conn.close()
            raise
        finally:
            self._joining = None
        self.welcome = welcome
        self.liveness.heard(time.monotonic())
        self.attach(conn, welcome.received_upto)
        return welcome

    def dial(self, address: str, factory: Callable[[], asyncio.Protocol]) -> asyncio.Protocol:
        """A connection to ``address`` through the client server (rpc's dialer)."""
        if self.error is not None:
            raise self.error
        self._next_channel += 2
        protocol = factory()
        transport = ChannelTransport(self, self._next_channel, address, protocol)
        self.channels[self._next_channel] = transport
        self.send_open(self._next_channel, address)
        protocol.connection_made(transport)
        return protocol

    def on_open(self, channel_id: int, address: str) -> None:
        protocol = self.accept()
        transport = ChannelTransport(self, channel_id, address, protocol)
        self.channels[channel_id] = transport
        protocol.connection_made(transport)

    # --- rpc.Handler (the tunnel connection itself) ----------------------------------------------
    def handle_message(self, conn: rpc.Connection, kind: int, request_id: int, msg: Any) -> None:
        if (conn is self.conn or conn is self._joining) and not self.on_tunnel_message(msg):
            log.warning("unexpected %s on the client tunnel", type(msg).__name__)

    def connection_lost(self, conn: rpc.Connection) -> None:
        if conn is self.conn and not self.is_closed:
            self.conn = None
            self._start_reconnect("the connection closed")

    # --- liveness and reconnection ------------------------------------------------------------
    def _tick(self) -> None:
        if self.is_closed:
            return
        now = time.monotonic()
        if self.conn is not None and self.liveness.is_silent(now, CONFIG.client_idle_timeout_s):
            conn, self.conn = self.conn, None
            conn.abort()
            self._start_reconnect(f"nothing heard for {CONFIG.client_idle_timeout_s:g} s")
        self.send_ping()
        self._ticker = self.loop.call_later(self._ping_interval_s(), self._tick)

    def _ping_interval_s(self) -> float:
        return self.welcome.ping_interval_s if self.welcome is not None else CONFIG.client_ping_interval_s

    def _start_reconnect(self, why: str) -> None:
        if self._reconnecting is None or self._reconnecting.done():
            log.warning("lost the connection to the ember client server at %s (%s); reconnecting",
                        self.server_address, why)
            self._reconnecting = self.loop.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        assert self.welcome is not None
        give_up_at = self.liveness.last_heard + self.welcome.grace_s
        attempt = 0
        while not self.is_closed:
            if time.monotonic() > give_up_at:
                return self.expire(f"could not reach it for longer than its {self.welcome.grace_s:g} s grace "
                                   "period, so the cluster ended this client's session")
            try:
                await self._hello(min(5.0, max(1.0, give_up_at - time.monotonic())))
                self.reconnects += 1
                log.warning("reconnected to the ember client server at %s", self.server_address)
                return
            except rpc.RpcError as e:
                if e.kind == "SessionExpired":
                    return self.expire(e.message)
                log.debug("reconnect failed: %s", e)
            except (OSError, TimeoutError, asyncio.TimeoutError) as e:
                log.debug("reconnect failed: %s", e)
            await asyncio.sleep(RECONNECT_BACKOFF_S[min(attempt, len(RECONNECT_BACKOFF_S) - 1)])
            attempt += 1

    def expire(self, why: str) -> None:
        """The session is gone: every channel closes, so the core worker fails what waits."""
        self.error = ClientSessionError(
            f"The connection to the ember cluster at ember://{self.server_address} was lost: {why}. "
            "This client's actors (except detached ones) and objects are gone. Call ember.shutdown() "
            "and ember.init() again to start a new session.")
        log.error("%s", self.error)
        self.close()

    def close(self, *, goodbye: bool = False) -> None:
        """Stop: channels report their connection lost; with ``goodbye`` the server ends the
        session at once (a clean shutdown), else it keeps it for the grace period."""
        if self.is_closed:
            return
        self.is_closed = True
        if self._ticker is not None:
            self._ticker.cancel()
        if self._reconnecting is not None and self._reconnecting is not asyncio.current_task():
            self._reconnecting.cancel()
        for transport in list(self.channels.values()):
            transport.peer_closed(str(self.error) if self.error else "the client tunnel closed")
        self.channels.clear()
        conn, self.conn = self.conn, None
        if conn is not None and not conn.closed:
            if goodbye:
                conn.send(m.ClientGoodbye())
            conn.close()
