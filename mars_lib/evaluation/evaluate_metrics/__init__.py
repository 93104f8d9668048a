"""Local `evaluate` metric scripts (loaded by path, never from the hub)."""
