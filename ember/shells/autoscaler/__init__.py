"""The autoscaler process: polls the control store, feeds the planner (ember.logic.autoscaler), calls a provider."""
