"""The `syncwire` command line: serve, publish, subscribe, presence, info, health.

Run it as ``syncwire`` (console script) or ``python -m client.cli``. It is built on the
typed client (`client.SyncClient`) and the generated stubs; `serve` starts the server
in place of this process, so nothing here imports the server package.
"""

from .app import main

__all__ = ["main"]
