"""The autoscaler's decisions: a budget-aware planner over node types (pure logic, no I/O)."""
