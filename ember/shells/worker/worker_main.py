"""Entry point of a worker process (forked by the zygote)."""
from __future__ import annotations

import logging
import sys
from typing import Any

from ember.shells.worker import core_worker
from ember.shells.worker import executor
from ember.shells.wire import session


def run(args: dict[str, Any]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    cw = core_worker.CoreWorker(
        mode="worker", token=session.read_token(args["token_file"]), node_address=args["node_address"],
        gcs_address=args["gcs_address"], worker_id=bytes.fromhex(args["worker_id"]),
        job_id=bytes.fromhex(args["job_id"]), host=args["host"])
    ex = executor.Executor(cw)
    core_worker.set_core_worker(cw)
    cw.executor = ex
    cw.start()
    try:
        ex.run()
    finally:
        cw.shutdown()
    return 0


if __name__ == "__main__":  # pragma: no cover
    print("workers are forked by the zygote; this module is not run directly", file=sys.stderr)
    sys.exit(2)
