"""``ember.autoscaler.sdk.request_resources``: ask the autoscaler to scale the cluster to hold bundles.

As in Ray, a request replaces the previous one, is a floor on the cluster's total size (not extra
capacity on top of what runs), and is kept until the next call (``request_resources()`` with no
arguments clears it).  It is stored in the control store's KV, where the autoscaler reads it each second.
"""
from __future__ import annotations

import json
from typing import Optional

from ember.lifecycle import core_worker_or_init
from ember.protocol import messages as m

KV_NAMESPACE = "autoscaler"          # shared with ember.shells.autoscaler.monitor
REQUEST_KEY = b"resource_request"


def request_resources(num_cpus: Optional[int] = None, bundles: Optional[list] = None) -> None:
    """Scale to hold ``num_cpus`` one-CPU bundles plus ``bundles`` (dicts of resource amounts)."""
    shapes: list = []
    if num_cpus is not None:
        if not isinstance(num_cpus, int) or isinstance(num_cpus, bool) or num_cpus < 0:
            raise TypeError(f"num_cpus must be a non-negative integer, got {num_cpus!r}")
        shapes += [{"CPU": 1}] * num_cpus
    if bundles is not None:
        if not isinstance(bundles, list) or not all(isinstance(b, dict) for b in bundles):
            raise TypeError(f"bundles must be a list of dicts, got {bundles!r}")
        for b in bundles:
            for k, v in b.items():
                if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                    raise ValueError(f"a bundle maps resource names to amounts >= 0, got {b!r}")
        shapes += [dict(b) for b in bundles]
    cw = core_worker_or_init()
    cw.run_sync(cw.gcs.request(m.KvPut(KV_NAMESPACE, REQUEST_KEY, json.dumps(shapes).encode(), True)), 30)
