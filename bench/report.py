"""Rendering results: a table per scenario (rich when installed), targets, JSON."""

from __future__ import annotations

import platform
import statistics
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from bench.loop import uvloop_wanted
from bench.results import ScenarioResult
from bench.targets import TargetCheck

_PACKAGES = ("grpcio", "protobuf", "websockets", "python-socketio", "aiohttp", "uvloop", "orjson")


def source_revision() -> dict[str, Any]:
    """The git commit of the server under test, and whether its code had uncommitted
    changes (server/, client/, wire/), so a figure can be traced to the code."""
    import server

    root = Path(server.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "server", "client", "wire"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "uncommitted_changes": None}
    return {"commit": commit or None, "uncommitted_changes": bool(changed) if commit else None}


def environment() -> dict[str, Any]:
    import os

    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "uvloop": uvloop_wanted(),
        "packages": versions,
        "source": source_revision(),
    }


def write_json(
    path: Path,
    argv: list[str],
    options: dict[str, Any],
    results: list[ScenarioResult],
    checks: list[TargetCheck],
) -> None:
    document = {
        "command": argv,
        "options": options,
        "environment": environment(),
        "scenarios": [r.to_json() for r in results],
        "targets": [c.to_json() for c in checks],
    }
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))


def _rows(result: ScenarioResult) -> list[list[str]]:
    rows = []
    for run in result.runs:
        label = run.subject + (f" [{run.phase}]" if run.phase else "")
        if run.skipped is not None:
            rows.append([label, "skipped"] + [""] * (len(result.columns) - 1))
        elif not run.rounds:
            rows.append([label, "failed"] + [""] * (len(result.columns) - 1))
        else:
            rows.append([label] + [c.render(run.median(c.key)) for c in result.columns])
    return rows


BUSY_MACHINE_CORES = 0.25


def _remarks(result: ScenarioResult) -> list[str]:
    """Notes, skip reasons, round errors and load warnings, one line each."""
    lines = list(result.notes)
    others = [o for run in result.runs for r in run.rounds if (o := r.get("other_cpu")) is not None]
    if others and max(others) > BUSY_MACHINE_CORES:
        lines.append(
            f"WARNING: processes outside the measured server and clients used up to "
            f"{max(others):.0%} of a core during rounds (median {statistics.median(others):.0%}); "
            "figures from a busy machine are noisy, rerun on an idle one"
        )
    for run in result.runs:
        label = run.subject + (f" [{run.phase}]" if run.phase else "")
        if run.skipped is not None:
            lines.append(f"{label} skipped: {run.skipped}")
        lines.extend(f"{label} error: {error}" for error in run.errors)
    return lines


def render_text(results: list[ScenarioResult], checks: list[TargetCheck]) -> str:
    """Plain-text (Markdown) tables: the format of bench/RESULTS.md."""
    lines: list[str] = []
    for result in results:
        lines.append(f"### {result.name}: {result.title}")
        lines.append("")
        if result.skipped is not None:
            lines.extend([f"skipped: {result.skipped}", ""])
            continue
        headers = ["subject", *(c.header for c in result.columns)]
        lines.append("| " + " | ".join(headers) + " |")
        lines.append("|" + "|".join("---" for _ in headers) + "|")
        for row in _rows(result):
            lines.append("| " + " | ".join(cell for cell in row) + " |")
        lines.append("")
        lines.extend(f"- {line}" for line in _remarks(result))
        lines.append("")
    lines.append("### targets")
    lines.append("")
    lines.append("| target | measured | required | status |")
    lines.append("|---|---|---|---|")
    for check in checks:
        lines.append(
            f"| {check.name} | {check.measured_text} | {check.required} | {check.status} |"
        )
    return "\n".join(lines) + "\n"


def print_results(results: list[ScenarioResult], checks: list[TargetCheck]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(render_text(results, checks))
        return
    console = Console(width=None if sys.stdout.isatty() else 160)
    for result in results:
        table = Table(title=f"{result.name}: {result.title}", title_justify="left")
        if result.skipped is not None:
            console.print(f"[bold]{result.name}[/bold]: skipped: {result.skipped}")
            continue
        table.add_column("subject")
        for column in result.columns:
            table.add_column(column.header, justify="right")
        for row in _rows(result):
            table.add_row(*row)
        console.print(table)
        for line in _remarks(result):
            console.print(f"  {line}", style="dim", markup=False, highlight=False)
    table = Table(title="targets", title_justify="left")
    for header in ("target", "measured", "required", "status"):
        table.add_column(header)
    for check in checks:
        style = {"met": "green", "MISSED": "red"}.get(check.status, "yellow")
        table.add_row(check.name, check.measured_text, check.required, check.status, style=style)
    console.print(table)
