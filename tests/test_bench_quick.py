"""`python -m bench --quick` end to end: correctness only, never timing.

Runs the whole bench as a subprocess (servers, baselines and client workers are its own
subprocesses) and checks that every scenario produced figures or said why it skipped,
that fan-out delivered every message in order, and that the JSON holds it all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.options import SCENARIO_NAMES

QUICK_BUDGET_SECONDS = 150
pytestmark = pytest.mark.timeout(QUICK_BUDGET_SECONDS + 30)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(out)],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=QUICK_BUDGET_SECONDS,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "Traceback" not in completed.stderr, completed.stderr[-4000:]
    assert f"results written to {out}" in completed.stdout
    document: dict[str, Any] = json.loads(out.read_text())
    document["_stdout"] = completed.stdout
    return document


def _subjects(document: dict[str, Any], scenario: str) -> list[dict[str, Any]]:
    (found,) = [s for s in document["scenarios"] if s["name"] == scenario]
    if found["skipped"]:
        return []
    subjects: list[dict[str, Any]] = found["subjects"]
    return subjects


def _measured(document: dict[str, Any], scenario: str) -> list[dict[str, Any]]:
    return [s for s in _subjects(document, scenario) if not s["skipped"]]


def test_every_scenario_reports_figures_or_a_reason(quick_run: dict[str, Any]) -> None:
    assert [s["name"] for s in quick_run["scenarios"]] == list(SCENARIO_NAMES)
    for scenario in quick_run["scenarios"]:
        if scenario["skipped"]:
            assert isinstance(scenario["skipped"], str) and scenario["skipped"].strip()
            continue
        assert scenario["subjects"], scenario["name"]
        for subject in scenario["subjects"]:
            where = f"{scenario['name']} {subject['subject']} {subject['phase']}"
            if subject["skipped"]:
                assert subject["skipped"].strip(), where
                continue
            assert subject["errors"] == [], where
            assert len(subject["rounds"]) == quick_run["options"]["rounds"], where
            for column in scenario["columns"]:
                assert subject["median"][column["key"]] is not None, (where, column)


def test_baselines_always_measure(quick_run: dict[str, Any]) -> None:
    """The baselines need nothing from syncwire, so they never skip."""
    for scenario in ("fanout", "rpc", "idle"):
        baselines = [s for s in _subjects(quick_run, scenario) if s["role"] == "baseline"]
        assert baselines and all(not s["skipped"] for s in baselines), scenario


def test_fanout_delivers_everything_in_order(quick_run: dict[str, Any]) -> None:
    runs = _measured(quick_run, "fanout") + _measured(quick_run, "redis")
    assert runs
    for subject in runs:
        for figures in subject["rounds"]:
            assert figures["delivered_per_s"] > 0, subject["subject"]
            assert figures["received"] == figures["expected"] > 0, subject["subject"]
            assert figures["missing"] == 0 and figures["out_of_order"] == 0, subject["subject"]
            assert 0 < figures["p50_ms"] <= figures["p99_ms"], subject["subject"]


def test_half_rate_runs_at_half_the_baseline_rate(quick_run: dict[str, Any]) -> None:
    subjects = _measured(quick_run, "fanout")
    maxima = {s["subject"]: s["median"]["published_per_s"] for s in subjects if s["phase"] == "max"}
    for subject in subjects:
        if subject["phase"] != "half-rate":
            continue
        baseline = subject["info"]["baseline"]
        assert subject["info"]["rate"] == pytest.approx(maxima[baseline] / 2)


def test_rpc_idle_translate_figures(quick_run: dict[str, Any]) -> None:
    for subject in _measured(quick_run, "rpc"):
        assert subject["median"]["calls_per_s"] > 0
    idle = quick_run["options"]["idle"]
    for subject in _measured(quick_run, "idle"):
        assert subject["median"]["held"] == idle, subject["subject"]
        assert subject["median"]["rss_after_mib"] > 0
    translate = _measured(quick_run, "translate")
    assert translate and all(s["median"]["ops_per_s"] > 0 for s in translate)


def test_targets_are_listed_with_a_status(quick_run: dict[str, Any]) -> None:
    targets = quick_run["targets"]
    assert len(targets) >= 12
    for target in targets:
        status = target["status"]
        assert status in ("met", "MISSED") or status.startswith(("not measured", "not run"))
        if status in ("met", "MISSED"):
            assert target["measured"] is not None, target["name"]
    assert "targets" in quick_run["_stdout"]
