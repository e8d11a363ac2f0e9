"""The jobs API on the head: HTTP app, job manager, job state in the control store's KV, and
the supervisor that runs each entrypoint (see docs/jobs.md)."""
