"""Bringing a control store to lead, and what it does when it stops leading (issue #11, §3).

``HeadRunner.wait_leading()`` opens the storage and runs the lease (``leadership.py``) until
this head leads; then the control store's tables are loaded from the storage and every write
is fenced by the epoch (``storage/fenced.py``).  Until then the control store listens and
answers ``WhoLeads`` (and every other request with a ``NotLeader`` error naming the leader).

A head that steps down (it could not renew, another head took the lease, a write was fenced)
stops serving at once: it closes every connection (nodes and drivers reconnect and find the
leader), and the process replaces itself (``exec``, same pid, same arguments plus
``--standby``) by a fresh standby with empty tables: a deposed head never serves again from
what it had in memory.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Any, Optional

from ember.shells.control.leadership import HeadLeadership, HeadRefused, lease_timings, role_reply
from ember.shells.control.storage import StorageError, open_storage
from ember.shells.control.storage.base import Storage
from ember.shells.control.storage.fenced import FencedStorage

log = logging.getLogger("ember.gcs")

_MODULE = "ember.shells.control.control_store"


class HeadRunner:
    def __init__(self, store: Any, args: argparse.Namespace, address: str, stop: "asyncio.Future[None]") -> None:
        self.store = store
        self.args = args
        self.address = address
        self.stop = stop
        self.is_standby = bool(getattr(args, "standby", False))
        self.leadership: Optional[HeadLeadership] = None
        self.storage: Optional[Storage] = None
        self.deposed_reason = ""
        self._loop = asyncio.get_running_loop()
        self._leading: "asyncio.Future[int]" = self._loop.create_future()
        store.who_leads = lambda: role_reply(self.leadership, self.address, store.leading)

    async def wait_leading(self, announce: Any) -> None:
        """Return once this head leads.  ``announce()`` prints READY (a standby: while it waits)."""
        url = self.args.storage
        if url.startswith("memory:"):
            self._lead_with(open_storage(url), None)
            return
        self.storage = await self._open(url)
        ttl, _, _ = lease_timings()
        lease_storage = open_storage(url, retry_timeout_s=min(0.5, ttl / 6), check=False, socket_timeout_s=ttl / 4)
        self.leadership = HeadLeadership(
            lease_storage, self.address, is_standby=self.is_standby,
            on_leader=lambda epoch: self._loop.call_soon_threadsafe(self._on_leader, epoch),
            on_step_down=lambda reason: self._loop.call_soon_threadsafe(self._on_step_down, reason),
            on_refused=lambda message: self._loop.call_soon_threadsafe(self._on_refused, message),
            on_serving=lambda serving: self._loop.call_soon_threadsafe(self._on_serving, serving))
        self.leadership.start()
        if self.is_standby:
            log.warning("standby head at %s: waiting for the lease in %s", self.address, self.storage.description)
            announce()
        stopped = asyncio.ensure_future(asyncio.shield(self.stop))
        done, _ = await asyncio.wait([self._leading, stopped], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if self._leading.done():
            self._leading.result()  # raises HeadRefused

    async def _open(self, url: str) -> Storage:
        """The storage.  A head that stepped down and restarted as a standby keeps trying (its
        storage may be cut off for a while); at a first start an unreachable storage is an error."""
        delay = 0.5
        while True:
            try:
                return await asyncio.to_thread(open_storage, url)
            except StorageError as exc:
                if not getattr(self.args, "after_step_down", False) or type(exc).__name__ != "StorageUnavailable":
                    raise
                log.warning("standby head: %s; trying again in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _lead_with(self, storage: Storage, epoch: Optional[int]) -> None:
        store = self.store
        if epoch is not None:
            assert self.leadership is not None
            storage = FencedStorage(storage, epoch, self._fenced)
        store.attach_storage(storage)
        store.durable.load(store)
        store.leading = True

    def _fenced(self) -> None:
        """A write was refused by the fence (event loop thread): stop serving now, and tell the
        lease thread."""
        assert self.leadership is not None
        self.leadership.write_fenced()
        self._on_step_down("a write was refused: another head leads with a newer epoch")

    # --- posted by the lease thread -----------------------------------------------------------------
    def _on_leader(self, epoch: int) -> None:
        if self._leading.done():
            return
        assert self.storage is not None
        try:
            self._lead_with(self.storage, epoch)
        except StorageError as exc:  # deposed while loading, or the storage went away
            self._on_step_down(f"loading the state failed: {exc}")
            return
        self._leading.set_result(epoch)

    def _on_serving(self, serving: bool) -> None:
        """Suspended (could not renew in time) or resumed: stop or start answering; the
        connections stay (a resumed head goes on with them)."""
        if self._leading.done() and not self.deposed_reason:
            self.store.leading = serving
            if serving:  # what was lost while suspended (a driver that ended, a node that went away)
                held, self.store.held_losses = self.store.held_losses, []
                for conn in held:
                    self.store.connection_lost(conn)

    def _on_refused(self, message: str) -> None:
        if not self._leading.done():
            self._leading.set_exception(HeadRefused(message))

    def _on_step_down(self, reason: str) -> None:
        if self.deposed_reason:
            return
        self.deposed_reason = reason
        self.store.leading = False
        # Shortly: the answer to the request that found the fence (a Deposed error) goes out first.
        self._loop.call_later(0.1, self._drop_connections)

    def _drop_connections(self) -> None:
        for conn in list(self.store.conns):
            conn.abort()  # a peer behind a cut link never drains what close() would flush
        if not self.stop.done():
            self.stop.set_result(None)

    def close(self) -> None:
        """A clean stop: a leader releases its lease so that the next head takes it at once."""
        if self.leadership is not None:
            self.leadership.stop(release=not self.deposed_reason)
        if self.storage is not None:
            self.storage.close()

    def exec_as_standby(self) -> None:
        """Replace this process by a fresh standby (same pid, arguments, port)."""
        argv = [a for a in sys.argv[1:] if a not in ("--standby", "--after-step-down")] + ["--standby",
                                                                                            "--after-step-down"]
        log.warning("stepped down (%s); restarting as a standby", self.deposed_reason)
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, "-m", _MODULE, *argv])


__all__ = ["HeadRunner", "HeadRefused"]
