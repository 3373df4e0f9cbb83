"""The `syncwire` command: one entry point, a subcommand per job.

`main` runs the click group without click's own error printing, so every failure is
one line on stderr (``syncwire: ...``) and a documented exit code (see `errors`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import click

from .admin import admin
from .errors import CliError, ExitCode
from .generate import generate
from .publish import publish
from .query import health, info, presence
from .serve import serve
from .subscribe import subscribe
from .target import group_connection_options

PROG = "syncwire"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="syncwire", prog_name=PROG)
@click.option(
    "-v", "--verbose", count=True, help="Log the client's connection activity (-vv: debug)."
)
@group_connection_options
def cli(verbose: int, **_connection: object) -> None:
    """syncwire: publish to, tail and inspect collections on a syncwire server.

    \b
    Quick start (two terminals):
      syncwire serve
      syncwire subscribe notes --join
      syncwire publish notes 'hello'

    Every command but serve and generate takes --server URL (grpc://HOST:PORT,
    ws://HOST:PORT, grpcs://, wss://; env SYNCWIRE_SERVER), --transport, --token (env
    SYNCWIRE_TOKEN), --tls, --ca FILE (env SYNCWIRE_CA) and --timeout, before or after
    the command name (for admin: also between admin and its subcommand).

    \b
    Exit codes: 0 ok, 1 refused or failed, 2 usage error, 3 server unreachable or not
    serving, 4 an application hook on the server failed or timed out, 130 interrupted.
    """
    _configure_logging(verbose)


def _configure_logging(verbose: int) -> None:
    """Quiet by default: the client logs its retries, which the commands report."""
    root = logging.getLogger()
    if verbose == 0:
        root.addHandler(logging.NullHandler())
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


for command in (serve, publish, subscribe, presence, info, health, generate, admin):
    cli.add_command(command)


def _fail(message: str, code: ExitCode) -> int:
    print(f"{PROG}: {' '.join(message.split())}", file=sys.stderr, flush=True)
    return int(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code."""
    try:
        result = cli.main(args=argv, prog_name=PROG, standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.format_message(), err=True)
        return int(ExitCode.USAGE)
    except click.UsageError as exc:
        path = exc.ctx.command_path if exc.ctx is not None else PROG
        return _fail(f"{exc.format_message()} (see '{path} --help')", ExitCode.USAGE)
    except click.ClickException as exc:  # a file that cannot be opened, ...
        return _fail(exc.format_message(), ExitCode.USAGE)
    except CliError as exc:
        return _fail(exc.message, exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        return _fail("interrupted", ExitCode.INTERRUPTED)
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away: nothing left to tell anyone
        return int(ExitCode.FAILURE)
    return result if isinstance(result, int) else int(ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())
