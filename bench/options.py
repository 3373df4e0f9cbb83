"""The bench's command line and the options every scenario reads."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SCENARIO_NAMES = ("fanout", "rpc", "idle", "translate", "catchup", "redis", "web")


@dataclass(frozen=True, slots=True)
class BenchOptions:
    scenarios: tuple[str, ...]
    subjects: tuple[str, ...]
    quick: bool
    subscribers: int
    seconds: float
    warmup: float
    rounds: int
    idle: int
    idle_hold: float
    workers: int
    window: int
    rpc_concurrency: int
    compression: bool
    max_other_load: float
    quiet_wait: float
    json_path: Path
    markdown_path: Path | None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["json_path"] = str(self.json_path)
        data["markdown_path"] = None if self.markdown_path is None else str(self.markdown_path)
        return data


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncwire-bench",
        description="Benchmarks syncwire against raw websockets, raw grpc.aio and "
        "python-socketio, alternating rounds in one run.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke mode: small N, short rounds, one round (< 1 minute)",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=SCENARIO_NAMES,
        metavar="NAME",
        help=f"run only these scenarios ({', '.join(SCENARIO_NAMES)}); repeatable",
    )
    parser.add_argument(
        "--subject",
        action="append",
        metavar="NAME",
        help="measure only these subjects (e.g. raw-websockets); repeatable",
    )
    parser.add_argument("--subscribers", type=int, help="fan-out subscribers (default 100)")
    parser.add_argument("--seconds", type=float, help="measured seconds per round (default 10)")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds before each round")
    parser.add_argument("--rounds", type=int, help="rounds per subject (default 3)")
    parser.add_argument("--idle", type=int, help="idle connections (default 5000)")
    parser.add_argument(
        "--idle-hold", type=float, help="seconds idle connections are held before RSS is read"
    )
    parser.add_argument(
        "--workers", type=int, help="client worker processes besides the publisher (default 3)"
    )
    parser.add_argument(
        "--window",
        type=int,
        default=128,
        help="max-rate publisher: messages in flight ahead of the slowest subscriber (default 128)",
    )
    parser.add_argument(
        "--rpc-concurrency",
        type=int,
        default=16,
        help="concurrent unary callers per worker (default 16)",
    )
    parser.add_argument(
        "--compression",
        action="store_true",
        help="fan-out/rpc WebSocket clients offer permessage-deflate",
    )
    parser.add_argument(
        "--json",
        dest="json_path",
        type=Path,
        default=Path("bench-results.json"),
        help="where to write every figure as JSON (default bench-results.json)",
    )
    parser.add_argument(
        "--markdown",
        dest="markdown_path",
        type=Path,
        help="also write the tables as Markdown (the format of bench/RESULTS.md)",
    )
    parser.add_argument(
        "--max-other-load",
        type=float,
        default=0.25,
        help="a round during which other processes used more cores than this is run "
        "again, up to twice (default 0.25)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        help="seconds to wait before each round for the machine to be quiet "
        "(default 60, --quick 0)",
    )
    return parser


def options_from(args: argparse.Namespace) -> BenchOptions:
    quick = bool(args.quick)

    def pick(value: Any, full: Any, small: Any) -> Any:
        return value if value is not None else (small if quick else full)

    options = BenchOptions(
        scenarios=tuple(args.scenario or SCENARIO_NAMES),
        subjects=tuple(args.subject or ()),
        quick=quick,
        subscribers=pick(args.subscribers, 100, 20),
        seconds=pick(args.seconds, 10.0, 0.75),
        warmup=pick(args.warmup, 1.0, 0.2),
        rounds=pick(args.rounds, 3, 1),
        idle=pick(args.idle, 5000, 200),
        idle_hold=pick(args.idle_hold, 12.0, 0.5),
        workers=pick(args.workers, 3, 2),
        window=args.window,
        rpc_concurrency=args.rpc_concurrency,
        compression=bool(args.compression),
        max_other_load=args.max_other_load,
        quiet_wait=pick(args.quiet_wait, 60.0, 0.0),
        json_path=args.json_path,
        markdown_path=args.markdown_path,
    )
    for name in ("subscribers", "rounds", "idle", "workers", "window", "rpc_concurrency"):
        if getattr(options, name) < 1:
            raise SystemExit(f"syncwire-bench: --{name.replace('_', '-')} must be >= 1")
    if options.seconds <= 0 or options.warmup < 0 or options.idle_hold < 0:
        raise SystemExit("syncwire-bench: --seconds must be > 0, --warmup/--idle-hold >= 0")
    return options
