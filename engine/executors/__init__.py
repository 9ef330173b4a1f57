"""Step executors, one per step kind."""
