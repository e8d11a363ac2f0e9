"""A driver's or worker's side of placement groups: requests to the control store.

``create`` only posts the request: the control store answers it once the group is created
(or removed), so ``wait()`` on a group this process created needs no round trip and
``ready()``'s ObjectRef is completed from that answer.  ``remove`` is posted too (Ray's
removal is asynchronous); later requests on the same connection see it done.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any, Callable, Optional

from ember.protocol import messages as m

log = logging.getLogger("ember.worker.pgs")


class PgClient:
    def __init__(self, cw: Any) -> None:
        self.cw = cw
        self.created: dict[bytes, concurrent.futures.Future] = {}  # groups this process created
        self._tasks: set[asyncio.Future] = set()

    # --- user thread ------------------------------------------------------------------------
    def create(self, msg: m.CreatePlacementGroup) -> None:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self.created[msg.pg_id] = fut
        self.cw.post(self._request_into, msg, fut)

    def remove(self, pg_id: bytes) -> None:
        self.created.pop(pg_id, None)  # wait() on it now asks the control store (REMOVED)
        self.cw.post(self._request_into, m.RemovePlacementGroup(pg_id), None)

    def wait(self, pg_id: bytes, timeout_s: Optional[float]) -> m.PlacementGroupInfo:
        fut = self.created.get(pg_id)
        if fut is not None:
            try:
                return fut.result(timeout_s)
            except concurrent.futures.TimeoutError:
                return self.request(m.GetPlacementGroup(pg_id, "", ""))
        return self.request(m.WaitPlacementGroup(pg_id, timeout_s), None if timeout_s is None else timeout_s + 10)

    def when_settled(self, pg_id: bytes, callback: Callable[[Optional[m.PlacementGroupInfo], Optional[BaseException]], None]) -> None:
        """Call ``callback(info, error)`` on the I/O thread once the group is created or removed."""
        fut = self.created.get(pg_id)

        def done(f: concurrent.futures.Future) -> None:
            error = f.exception()
            callback(None if error else f.result(), error)
        if fut is not None:
            fut.add_done_callback(lambda f: self.cw.post(done, f))
            return
        fut2: concurrent.futures.Future = concurrent.futures.Future()
        fut2.add_done_callback(done)
        self.cw.post(self._request_into, m.WaitPlacementGroup(pg_id, None), fut2)

    def request(self, msg: Any, timeout_s: Optional[float] = 60.0) -> Any:
        async def _ask() -> Any:
            return await self.cw.head.request(msg)  # sent again if the head fails over under it
        return self.cw.run_sync(_ask(), timeout_s=timeout_s)

    # --- I/O thread -------------------------------------------------------------------------------
    def _request_into(self, msg: Any, fut: Optional[concurrent.futures.Future]) -> None:
        gcs = self.cw.gcs
        if gcs is not None and not gcs.closed:
            self._chain(gcs.request_future(msg), fut)
            return

        async def _send() -> Any:
            return await (await self.cw.gcs_conn()).request(msg)
        task = asyncio.ensure_future(_send())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._chain(task, fut)

    def _chain(self, source: "asyncio.Future[Any]", fut: Optional[concurrent.futures.Future]) -> None:
        def done(f: "asyncio.Future[Any]") -> None:
            error = None if f.cancelled() else f.exception()
            if fut is None:
                if error is not None:
                    log.warning("placement group request failed: %s", error)
                return
            if f.cancelled():
                fut.cancel()
            elif error is not None:
                fut.set_exception(_user_error(error))
            else:
                fut.set_result(f.result())
        source.add_done_callback(done)


def _user_error(error: BaseException) -> BaseException:
    kind = getattr(error, "kind", "")
    if kind == "ValueError":
        return ValueError(getattr(error, "message", str(error)))
    return error


def client(cw: Any) -> PgClient:
    pgc = getattr(cw, "_pg_client", None)
    if pgc is None:
        pgc = cw._pg_client = PgClient(cw)
    return pgc
