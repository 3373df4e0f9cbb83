"""syncwire-bench: measures syncwire against the raw libraries it stands on.

Every scenario runs syncwire and its baselines in the same run, in alternating rounds,
with the same client harness (client worker subprocesses, uvloop when installed), so the
overhead shows as a ratio. Run ``python -m bench --help``.
"""
