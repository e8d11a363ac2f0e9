"""A core worker with no node of its own: the remote client of ``ember.init("ember://...")``.

The client's core worker is the driver's, unchanged, except for three things done here
(docs/client.md):

- its connections go through the tunnel to the head's client server (``connect``): rpc's
  dialer is pointed at the tunnel, and connections to the client arrive from it;
- it cannot map the head node's shared memory, so a large object it puts is streamed to the
  head node's store in chunks (``upload``: CreateObject, WriteObjectChunk..., ObjectSealed),
  and a large object it gets is read in chunks from the node holding it (``download``,
  ReadChunk as a node's pull does), into one buffer that the value then uses (zero copy);
- when the session ends for good, the error says so (``session_error``).
"""
from __future__ import annotations

import asyncio
from typing import Any, Optional

from ember.config import CONFIG
from ember.protocol import messages as m
from ember.shells.wire import rpc
from ember.shells.wire.tunnel import ClientTunnel

__all__ = ["connect", "upload", "download", "close", "session_error"]

_CHUNKS_IN_FLIGHT = 4
_SMALL_PART_BYTES = 64 * 1024


async def connect(cw: Any, server_address: str) -> None:
    """Open the tunnel; the core worker's address, control store and node are the server's."""
    tunnel = ClientTunnel(server_address, cw.token, cw.namespace,
                          accept=lambda: rpc.Connection(cw, cw.token, is_server=True))
    cw.tunnel = tunnel
    welcome = await tunnel.open()
    rpc.set_dialer(cw.loop, tunnel.dial)
    cw.address = welcome.address
    cw.gcs_address = welcome.gcs_address
    cw.node_address = welcome.node_address


def session_error(cw: Any) -> Optional[BaseException]:
    tunnel = getattr(cw, "tunnel", None)
    return tunnel.error if tunnel is not None else None


def close(cw: Any) -> None:
    """I/O thread, at shutdown, after the core worker closed its connections."""
    tunnel = cw.tunnel
    if tunnel is not None:
        rpc.set_dialer(None, None)
        tunnel.close(goodbye=True)


# --- objects -----------------------------------------------------------------------------------
def upload(cw: Any, oid: bytes, ser: Any, owner_address: str) -> None:
    """Put ``ser`` into the head node's store, chunk by chunk (caller's thread)."""
    cw.run_sync(_upload(cw, oid, ser, owner_address))
    cw.refs.note_stored(ser.total_bytes)


async def _upload(cw: Any, oid: bytes, ser: Any, owner_address: str) -> None:
    from ember.shells.worker.store_writer import store_full_error
    size = ser.total_bytes
    cw.refs.drain()
    try:
        granted = await cw.raylet.request(m.CreateObject(oid, size, owner_address))
    except rpc.RpcError as e:
        if e.kind == "ObjectExists":
            return
        if e.kind == "ObjectStoreFullError":
            raise store_full_error(e) from None
        raise
    chunk_bytes = CONFIG.transfer_chunk_bytes
    window = asyncio.Semaphore(_CHUNKS_IN_FLIGHT)
    pending: list[asyncio.Future] = []
    for offset, piece in _pieces(ser, chunk_bytes):
        await window.acquire()
        fut = cw.raylet.request_future(m.WriteObjectChunk(oid, offset, size, granted.recycled_name, piece))
        fut.add_done_callback(lambda _f: window.release())
        pending.append(fut)
    try:
        await asyncio.gather(*pending)
    except BaseException:
        try:
            await cw.raylet.request(m.AbortObject(oid, False))
        except (rpc.RpcError, rpc.ConnectionLost):
            pass
        raise
    cw.raylet.send(m.ObjectSealed(oid, size, owner_address))


def _pieces(ser: Any, chunk_bytes: int) -> Any:
    """(offset, bytes-like) pieces of the object's encoding, at most ``chunk_bytes`` each: slices
    of the value's own buffers (no copy; the message is encoded at once), small parts joined."""
    offset = 0
    small = bytearray()
    for part in ser.chunks():
        view = memoryview(part).cast("B")
        if view.nbytes < _SMALL_PART_BYTES:
            small += view
            if len(small) < chunk_bytes:
                continue
        if small:
            yield offset, bytes(small)
            offset += len(small)
            small = bytearray()
            if view.nbytes < _SMALL_PART_BYTES:
                continue
        for start in range(0, view.nbytes, chunk_bytes):
            piece = view[start:start + chunk_bytes]
            yield offset, piece
            offset += piece.nbytes
    if small:
        yield offset, bytes(small)


def download(cw: Any, oid: bytes, e: Any) -> memoryview:
    """Read a stored object from the node holding it (caller's thread)."""
    return memoryview(cw.run_sync(_download(cw, oid, e.node_address)))


async def _download(cw: Any, oid: bytes, node_address: str) -> bytearray:
    chunk_bytes = CONFIG.transfer_chunk_bytes
    try:
        node = await cw.peers.get(node_address)
        first = await node.request(m.ReadChunk(oid, 0, chunk_bytes))
    except rpc.RpcError as err:
        raise cw._lost_error(oid, err.message) from None
    except (OSError, rpc.ConnectionLost) as err:
        raise cw._lost_error(oid, f"the node daemon at {node_address} is unreachable: {err}") from None
    out = bytearray(first.total_bytes)
    out[:len(first.data)] = first.data
    window = asyncio.Semaphore(_CHUNKS_IN_FLIGHT)

    async def fetch(offset: int) -> None:
        async with window:
            reply = await node.request(m.ReadChunk(oid, offset, chunk_bytes))
            out[offset:offset + len(reply.data)] = reply.data

    try:
        await asyncio.gather(*(fetch(o) for o in range(len(first.data), first.total_bytes, chunk_bytes)))
    except rpc.RpcError as err:
        raise cw._lost_error(oid, err.message) from None
    return out


def init_error(server: str, error: BaseException) -> BaseException:
    """What ``init("ember://...")`` raises when the client could not start."""
    if isinstance(error, rpc.TokenRefused):
        return ConnectionError(
            f"The ember client server at {server} refused this client's cluster token. Set "
            f"EMBER_CLUSTER_TOKEN to the contents of the 'token' file in the cluster's session directory.")
    if isinstance(error, rpc.RpcError) and error.kind == "VersionMismatch":
        return RuntimeError(error.message)
    if isinstance(error, (TimeoutError, asyncio.TimeoutError)):
        return TimeoutError(f"The ember client server at {server} did not answer within "
                            f"{CONFIG.connect_timeout_s:g} s (EMBER_CONNECT_TIMEOUT_S).")
    if isinstance(error, rpc.ConnectionLost):
        return ConnectionError(
            f"The ember client server at {server} closed the connection before the session started: check "
            f"that this client has the cluster's TLS settings (EMBER_TLS_CERT/KEY/CA, a certificate of the "
            f"cluster's CA) if the cluster uses TLS. ({error})")
    if isinstance(error, OSError):
        return ConnectionError(f"Could not connect to the ember client server at {server}: {error}. Is the head "
                               f"started with `ember start --head` (client server port "
                               f"{CONFIG.client_server_port} by default, --client-server-port)?")
    return error
