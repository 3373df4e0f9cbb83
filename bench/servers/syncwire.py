"""Runs the syncwire server (``python -m server``'s entry point, same flags) on uvloop
when installed, since the server's own entry point uses the default asyncio loop."""

from __future__ import annotations

import sys

from bench.loop import exit_with_parent, install_uvloop, raise_nofile_limit


def cli() -> None:
    raise_nofile_limit()
    install_uvloop()
    exit_with_parent()
    from server.__main__ import main

    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    cli()
