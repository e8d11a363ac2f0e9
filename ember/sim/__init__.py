"""A deterministic discrete-event simulation of an ember cluster running ember's shipping logic.

The node daemons' lease managers and bundle tables, the control store's node, actor and
placement-group tables, the owners' key queues, retry policy and reference tables, and the
autoscaler planner are imported from ``ember.logic`` and driven unchanged; this package only
supplies what the shells supply in production: a clock (virtual), a network (modelled), worker
processes (modelled) and faults.  See docs/scale.md, "The simulator".

    python -m ember.sim --nodes 5000 --workload tasks --seed 7
"""
