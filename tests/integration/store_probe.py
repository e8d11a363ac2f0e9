"""Helpers for tests that look into this process's core worker and its node's object store."""
import gc
import time

from ember.protocol import messages as m
from ember.shells.worker import core_worker as cwmod


def core_worker():
    return cwmod.get_core_worker()


def node_stats(address=None):
    """NodeStatsReply of this driver's node daemon (or of the node daemon at ``address``)."""
    cw = core_worker()

    async def ask():
        conn = cw.raylet if address is None else await cw.peers.get(address)
        return await conn.request(m.NodeStats(), timeout_s=10)

    return cw.run_sync(ask())


def wait_for(cond, *, what, timeout_s=20.0, poll_s=0.1, collect_garbage=False):
    """Poll ``cond`` until it returns something true (returned) or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        if collect_garbage:
            gc.collect()
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(poll_s)
