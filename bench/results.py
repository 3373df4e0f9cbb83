"""What scenarios produce: per-subject rounds of figures, medians, skips and errors."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Column:
    """A figure shown in the table: key in the round dicts, header, format."""

    key: str
    header: str
    fmt: str = "{:,.0f}"

    def render(self, value: float | None) -> str:
        return "-" if value is None else self.fmt.format(value)


@dataclass
class SubjectRun:
    """All rounds of one subject (a system under test) in one phase of a scenario."""

    subject: str
    phase: str = ""
    role: str = "syncwire"
    rounds: list[dict[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def median(self, key: str) -> float | None:
        values = [r[key] for r in self.rounds if r.get(key) is not None]
        return statistics.median(values) if values else None

    def to_json(self, columns: list[Column]) -> dict[str, Any]:
        keys = sorted({k for r in self.rounds for k in r} | {c.key for c in columns})
        return {
            "subject": self.subject,
            "phase": self.phase,
            "role": self.role,
            "skipped": self.skipped,
            "errors": self.errors,
            "info": self.info,
            "median": {k: self.median(k) for k in keys},
            "rounds": self.rounds,
        }


@dataclass
class ScenarioResult:
    name: str
    title: str
    columns: list[Column]
    runs: list[SubjectRun] = field(default_factory=list)
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def run(self, subject: str, phase: str = "") -> SubjectRun | None:
        for run in self.runs:
            if run.subject == subject and run.phase == phase:
                return run
        return None

    def median(self, subject: str, key: str, phase: str = "") -> float | None:
        run = self.run(subject, phase)
        return None if run is None else run.median(key)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "skipped": self.skipped,
            "notes": self.notes,
            "seconds": self.seconds,
            "columns": [{"key": c.key, "header": c.header} for c in self.columns],
            "subjects": [run.to_json(self.columns) for run in self.runs],
        }
