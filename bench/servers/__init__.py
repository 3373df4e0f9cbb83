"""Servers the bench runs in their own processes: the baselines, and a shim that runs
the syncwire server on uvloop. Each prints a ready line with its endpoints."""

READY_MARKER = "bench-server ready"
