"""Which cluster ``init()`` joins, or whether it starts one: Ray's address rules as plain code.

The shell (``ember/shells/wire/discovery.py``) gathers the facts (the ``address`` argument,
``EMBER_ADDRESS``/``RAY_ADDRESS``, the current-cluster record of ``ember start --head`` and
whether it still runs, the live clusters of this user on this machine) and asks ``decide``.

Rules (Ray's ``ray.init``):

1. ``address="local"``: start a new private cluster, whatever runs.
2. ``address="HOST:PORT"`` (``ember://`` allowed): join it.
3. No address: ``EMBER_ADDRESS`` (else ``RAY_ADDRESS``) when set; else the current cluster
   (started by ``ember start --head``) if it is alive; else start a new private cluster.
4. ``address="auto"``: as 3, but with no current cluster join the one live cluster of this user
   on this machine (a driver's ``init()`` cluster counts); several live clusters or none is a
   ``ConnectionError``: "auto" never starts one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

ADDRESS_ENV_VARS = ("EMBER_ADDRESS", "RAY_ADDRESS")


@dataclass(frozen=True)
class Candidate:
    """A cluster recorded on this machine."""
    address: str
    session_dir: str
    started_by: str          # "start" (ember start --head) or "init" (a driver's private cluster)
    is_alive: bool


@dataclass(frozen=True)
class JoinCluster:
    address: str
    session_dir: str         # where its token lies on this machine; "" when unknown
    reason: str


@dataclass(frozen=True)
class StartLocal:
    reason: str


@dataclass(frozen=True)
class NotFound:
    message: str


Decision = Union[JoinCluster, StartLocal, NotFound]


def strip_scheme(address: str) -> str:
    return address.split("://", 1)[-1]


def requested_mode(address: Optional[str], env: dict[str, str]) -> Union[str, None]:
    """The address that counts. A concrete argument (or "local") wins; with no argument or "auto",
    the first address variable that is set and is not "auto" wins (Ray's order); else the argument."""
    if address and address != "auto":
        return address
    for name in ADDRESS_ENV_VARS:
        value = env.get(name)
        if value and value != "auto":
            return value
    if address == "auto" or "auto" in (env.get(name) for name in ADDRESS_ENV_VARS):
        return "auto"
    return None


def decide(address: Optional[str], env: dict[str, str], current: Optional[Candidate],
           others: list[Candidate]) -> Decision:
    """``current``: the record of ``ember start --head`` (None if absent); ``others``: every other
    cluster recorded on this machine."""
    wanted = requested_mode(address, env)
    if wanted == "local":
        return StartLocal("address='local' asks for a new private cluster")
    if wanted is not None and wanted != "auto":
        source = "the address argument" if address == wanted else next(n for n in ADDRESS_ENV_VARS if env.get(n))
        return JoinCluster(strip_scheme(wanted), "", f"address from {source}")
    if current is not None and current.is_alive:
        return JoinCluster(current.address, current.session_dir, "the cluster started by `ember start --head`")
    if wanted is None:
        return StartLocal("no address given and no running cluster recorded by `ember start --head`")
    alive = [c for c in others if c.is_alive and c.address != (current.address if current else None)]
    if len(alive) == 1:
        only = alive[0]
        return JoinCluster(only.address, only.session_dir, f"the only running cluster on this machine "
                                                          f"(started by {'ember start' if only.started_by == 'start' else 'a driver'})")
    if len(alive) > 1:
        listed = ", ".join(c.address for c in alive)
        return NotFound(f"Found multiple active ember instances: {listed}. Please specify the one to connect "
                        f"to by setting `address` (or EMBER_ADDRESS).")
    stale = " (the recorded cluster at " + current.address + " is no longer running)" if current else ""
    return NotFound("Could not find any running ember instance" + stale + ". Please specify the one to "
                    "connect to by setting `address`, or start one with `ember start --head` (or "
                    "`ember.init()` with no address).")
