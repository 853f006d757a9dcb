"""Simulated callers and the load bench; not used by the running gateway."""
