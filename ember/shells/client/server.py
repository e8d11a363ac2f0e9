"""The client server: the head's end of ember:// tunnels (docs/client.md).

Process main (``python -m ember.shells.client.server``), started by ``ember start --head`` on
``--client-server-port`` (10001).  It holds one *session* per remote client:

- the client's tunnel connection (an ember connection: token handshake, sealed records,
  TLS when the cluster's is on), replaced when the client reconnects;
- a listener on the head whose address is the client core worker's address: connections
  the cluster makes to the client arrive there and are relayed to it as channels;
- the relays of the channels the client opened (to the control store, node daemons,
  workers), each a TCP (TLS) connection from here.

It never reads what a channel carries (that is the client's own ember connection, its
handshake and records end to end), so it unpickles nothing from anyone.  A session whose
client has not been heard from for the grace period is ended: its relays close, so the
cluster sees the client's connections close exactly as when a driver exits (its job ends,
its non-detached actors and its objects are freed).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import time
from typing import Any, Optional

from ember import __version__
from ember.config import CONFIG
from ember.protocol import codec
from ember.protocol import messages as m
from ember.shells.wire import addresses, rpc, session as session_files, tls
from ember.shells.wire.tunnel import CLIENT_PROTOCOL_VERSION, TunnelEnd

log = logging.getLogger("ember.client_server")

_VERSION = f"{__version__}/{CLIENT_PROTOCOL_VERSION}"
_PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"


def _nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


class Relay(asyncio.Protocol):
    """The server's side of one channel: a socket to a cluster process, bytes both ways."""

    def __init__(self, session: "Session", channel_id: int = 0) -> None:
        self.session = session
        self.channel_id = channel_id
        self.transport: Optional[asyncio.Transport] = None
        self._early: list[bytes] = []        # bytes from the client before the socket connected
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        _nodelay(transport)
        if self.closed:
            transport.close()
            return
        if not self.channel_id:  # inbound: the cluster connected to the client's listener
            self.channel_id = self.session.new_inbound_channel()
            self.session.channels[self.channel_id] = self
            peer = transport.get_extra_info("peername")
            self.session.send_open(self.channel_id, f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "")
        for data in self._early:
            transport.write(data)  # type: ignore[attr-defined]
        self._early.clear()

    def data_received(self, data: bytes) -> None:
        self.session.send_data(self.channel_id, data)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.closed = True
        if self.channel_id and self.session.channels.get(self.channel_id) is self:
            del self.session.channels[self.channel_id]
            self.session.send_close(self.channel_id, f"connection closed by the peer{f': {exc}' if exc else ''}")

    # --- from the tunnel ----------------------------------------------------------------------
    def deliver(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)
        elif not self.closed:
            self._early.append(data)

    def peer_closed(self, reason: str) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Session(TunnelEnd):
    def __init__(self, server: "ClientServer", session_id: bytes, namespace: str) -> None:
        super().__init__()
        self.server = server
        self.session_id = session_id
        self.namespace = namespace
        self.listener: Optional[asyncio.AbstractServer] = None
        self.address = ""
        self._next_inbound = -1             # the server numbers its channels odd
        self.is_ended = False

    async def listen(self, host: str) -> None:
        loop = asyncio.get_running_loop()
        ssl_ctx = tls.env_server_context()
        self.listener = await loop.create_server(lambda: Relay(self), host, 0, ssl=ssl_ctx,
                                                 ssl_handshake_timeout=CONFIG.handshake_timeout_s if ssl_ctx else None)
        self.address = f"{addresses.advertised_host(host)}:{self.listener.sockets[0].getsockname()[1]}"

    def new_inbound_channel(self) -> int:
        self._next_inbound += 2
        return self._next_inbound

    def on_open(self, channel_id: int, address: str) -> None:
        relay = Relay(self, channel_id)
        self.channels[channel_id] = relay
        self.server.spawn(self._dial(relay, address))

    async def _dial(self, relay: Relay, address: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            host, port = rpc.split_address(address)
            ssl_ctx = tls.env_client_context()
            async with asyncio.timeout(CONFIG.connect_timeout_s):
                await loop.create_connection(lambda: relay, host, port, ssl=ssl_ctx,
                                             server_hostname=host if ssl_ctx is not None else None)
        except (OSError, ValueError, TimeoutError) as e:
            if self.channels.get(relay.channel_id) is relay:
                del self.channels[relay.channel_id]
                self.send_close(relay.channel_id, f"the client server could not connect to {address}: {e}")

    def end(self, why: str) -> None:
        """Close everything of the session: the cluster sees the client's connections close."""
        if self.is_ended:
            return
        self.is_ended = True
        log.info("ending client session %s (namespace %s): %s; %d channel(s)", self.session_id.hex()[:12],
                 self.namespace, why, len(self.channels))
        for relay in list(self.channels.values()):
            relay.closed = True
            if relay.transport is not None:
                relay.transport.abort()
        self.channels.clear()
        if self.listener is not None:
            self.listener.close()
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class ClientServer:
    """rpc.Handler of the client port; owns the sessions."""

    def __init__(self, host: str, gcs_address: str, node_address: str) -> None:
        self.host = host
        self.gcs_address = gcs_address
        self.node_address = node_address
        self.sessions: dict[bytes, Session] = {}
        self._tasks: set[asyncio.Task] = set()
        self.grace_s = CONFIG.client_reconnect_grace_s
        self.ping_interval_s = CONFIG.client_ping_interval_s

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- rpc.Handler ---------------------------------------------------------------------------
    def handle_message(self, conn: rpc.Connection, kind: int, request_id: int, msg: Any) -> None:
        sess: Optional[Session] = conn.state.get("session")
        if sess is not None and sess.conn is conn:
            if sess.on_tunnel_message(msg):
                return
            if type(msg) is m.ClientGoodbye:
                self._end(sess, "the client shut down")
                return
        if type(msg) is m.ClientHello and kind == codec.KIND_REQUEST:
            self.spawn(self._hello(conn, request_id, msg))
        elif kind == codec.KIND_REQUEST:
            conn.reply_error(request_id, "ValueError", f"the client server does not handle {type(msg).__name__}")

    def connection_lost(self, conn: rpc.Connection) -> None:
        sess: Optional[Session] = conn.state.get("session")
        if sess is not None and sess.conn is conn:
            sess.conn = None  # the grace period runs from when the client was last heard

    async def _hello(self, conn: rpc.Connection, request_id: int, msg: m.ClientHello) -> None:
        if msg.version != _VERSION or msg.python != _PYTHON:
            conn.reply_error(request_id, "VersionMismatch",
                             f"Version mismatch: this client runs ember {msg.version} on Python {msg.python}, "
                             f"the cluster runs ember {_VERSION} on Python {_PYTHON}; use the same versions")
            return
        if msg.session_id:
            sess = self.sessions.get(msg.session_id)
            if sess is None:
                conn.reply_error(request_id, "SessionExpired",
                                 f"the cluster ended this client's session (nothing was heard from the client "
                                 f"for longer than the {self.grace_s:g} s grace period)")
                return
            if sess.conn is not None and sess.conn is not conn:
                sess.conn.abort()
        else:
            sess = Session(self, os.urandom(16), msg.namespace)
            try:
                await sess.listen(self.host)
            except OSError as e:
                conn.reply_error(request_id, "RuntimeError", f"the client server could not listen: {e}")
                return
            self.sessions[sess.session_id] = sess
            log.info("new client session %s from %s (namespace %s)", sess.session_id.hex()[:12], conn.peer,
                     msg.namespace)
        conn.state["session"] = sess
        sess.liveness.heard(time.monotonic())
        conn.reply(request_id, m.ClientWelcome(sess.session_id, sess.stream.received_upto, sess.address,
                                               self.gcs_address, self.node_address, self.grace_s,
                                               self.ping_interval_s))
        sess.attach(conn, msg.received_upto)  # after the welcome: the client applies in order

    def _end(self, sess: Session, why: str) -> None:
        self.sessions.pop(sess.session_id, None)
        sess.end(why)

    # --- time ----------------------------------------------------------------------------------
    def tick(self) -> None:
        now = time.monotonic()
        for sess in list(self.sessions.values()):
            if sess.conn is not None and sess.liveness.is_silent(now, CONFIG.client_idle_timeout_s):
                log.warning("client session %s silent for %g s: closing its connection", sess.session_id.hex()[:12],
                            CONFIG.client_idle_timeout_s)
                sess.conn.abort()
                sess.conn = None
            if sess.conn is None and sess.liveness.is_expired(now, self.grace_s):
                self._end(sess, f"not heard from for {self.grace_s:g} s (the grace period)")
            else:
                sess.send_ping()

    def close(self) -> None:
        for sess in list(self.sessions.values()):
            self._end(sess, "the client server stops")


async def _main(args: argparse.Namespace) -> None:
    token = session_files.read_token(args.token_file)
    server = ClientServer(args.host, args.gcs_address, args.node_address)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    listener = await rpc.serve(server, args.host, args.port, token)
    port = listener.sockets[0].getsockname()[1]
    warning = addresses.exposure_warning(args.host)
    if warning:
        log.warning("%s", warning)
    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()

    async def ticking() -> None:
        while True:
            await asyncio.sleep(server.ping_interval_s / 2)
            server.tick()

    async with asyncio.TaskGroup() as tg:
        ticker = tg.create_task(ticking())
        await stopping.wait()
        listener.close()
        server.close()
        ticker.cancel()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gcs-address", required=True)
    parser.add_argument("--node-address", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=CONFIG.client_server_port)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    rpc.install_uvloop()
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
