"""``python -m bench`` / ``syncwire-bench``: run the scenarios, print the tables, write
the JSON."""

from __future__ import annotations

import sys
import time

from bench.loop import raise_nofile_limit, run
from bench.options import BenchOptions, build_parser, options_from
from bench.pool import WorkerPool
from bench.report import print_results, render_text, write_json
from bench.results import ScenarioResult
from bench.scenarios import BenchContext, all_scenarios
from bench.targets import check_targets


def _progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def run_bench(options: BenchOptions) -> list[ScenarioResult]:
    scenarios = all_scenarios()
    pool = await WorkerPool.start(options.workers + 1)
    ctx = BenchContext(options, pool, _progress)
    results: list[ScenarioResult] = []
    try:
        for name in options.scenarios:
            scenario = scenarios[name]
            _progress(f"{name}: starting")
            started = time.monotonic()
            result = await scenario.run(ctx)
            result.seconds = time.monotonic() - started
            _progress(f"{name}: done in {result.seconds:.1f} s")
            results.append(result)
    finally:
        await pool.close()
    return results


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = options_from(args)
    raise_nofile_limit()
    results = run(run_bench(options))
    checks = check_targets(results, options.subscribers, options.idle)
    command = ["syncwire-bench", *(sys.argv[1:] if argv is None else argv)]
    write_json(options.json_path, command, options.to_json(), results, checks)
    if options.markdown_path is not None:
        options.markdown_path.write_text(render_text(results, checks))
    print_results(results, checks)
    print(f"\nresults written to {options.json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
