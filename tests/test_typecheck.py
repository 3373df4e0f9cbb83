"""Proves the typed surface is real: mypy --strict accepts correct use and rejects misuse.

Every file in tests/typecheck_cases/ is checked in ONE mypy run with the project's own
configuration. `good_*.py` files must produce no error at all. `bad_*.py` files mark each
line mypy must reject with a `# expect[<error-code>]: <message text>` comment; the errors
reported for a file must be exactly the marked ones (same lines, same codes, and the
message must contain the marked text).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from mypy import api as mypy_api

CASES_DIR = Path(__file__).parent / "typecheck_cases"
GOOD_CASES = sorted(CASES_DIR.glob("good_*.py"))
BAD_CASES = sorted(CASES_DIR.glob("bad_*.py"))

# The misuse kinds the issue requires to be rejected, by the mypy error code that says so:
# wrong request type / field type / enum value (arg-type), unknown constructor field
# (call-arg), unknown RPC or field attribute (attr-defined), wrong servicer signature
# (override), wrong response type (assignment), awaiting a non-awaitable call (misc).
REQUIRED_CODES = frozenset(
    {"arg-type", "call-arg", "attr-defined", "override", "assignment", "misc"}
)

_EXPECT = re.compile(r"#\s*expect\[(?P<code>[a-z0-9-]+)\]:\s*(?P<text>.+?)\s*$")
_ERROR = re.compile(
    r"^(?P<path>.+?):(?P<line>\d+): error: (?P<message>.*?)  \[(?P<code>[a-z0-9-]+)\]$"
)


@dataclass(frozen=True)
class Diagnostic:
    """One mypy error: where, which code, what it said."""

    line: int
    code: str
    message: str


def expected_errors(path: Path) -> list[Diagnostic]:
    """The `# expect[code]: text` markers of a snippet, as diagnostics (message = text)."""
    found = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = _EXPECT.search(line)
        if match:
            found.append(Diagnostic(number, match["code"], match["text"]))
    return found


@pytest.fixture(scope="session")
def mypy_errors(repo_root: Path) -> Mapping[Path, list[Diagnostic]]:
    """Runs mypy once over every snippet; errors grouped by snippet file."""
    snippets = [str(path) for path in (*GOOD_CASES, *BAD_CASES)]
    # mypy_path ("generated") in the config is relative to the working directory.
    with contextlib.chdir(repo_root):
        stdout, stderr, status = mypy_api.run(
            [
                "--config-file",
                str(repo_root / "pyproject.toml"),
                "--no-pretty",
                "--no-color-output",
                "--show-absolute-path",
                *snippets,
            ]
        )
    assert status in (0, 1), f"mypy did not run (exit {status}):\n{stderr}{stdout}"
    errors: dict[Path, list[Diagnostic]] = {}
    for line in stdout.splitlines():
        match = _ERROR.match(line)
        if match:
            diagnostic = Diagnostic(int(match["line"]), match["code"], match["message"])
            errors.setdefault(Path(match["path"]).resolve(), []).append(diagnostic)
    unparsed = [
        line for line in stdout.splitlines() if ": error:" in line and not _ERROR.match(line)
    ]
    assert not unparsed, f"unrecognised mypy output: {unparsed}"
    return errors


def test_snippets_exist() -> None:
    assert GOOD_CASES, "no good_*.py snippet"
    assert len(BAD_CASES) >= 5, "at least five kinds of misuse must be checked"


@pytest.mark.parametrize("snippet", GOOD_CASES, ids=lambda path: path.stem)
def test_correct_use_type_checks(
    snippet: Path, mypy_errors: Mapping[Path, list[Diagnostic]]
) -> None:
    assert expected_errors(snippet) == [], "a good snippet must not expect errors"
    assert mypy_errors.get(snippet.resolve(), []) == []


@pytest.mark.parametrize("snippet", BAD_CASES, ids=lambda path: path.stem)
def test_misuse_is_rejected(snippet: Path, mypy_errors: Mapping[Path, list[Diagnostic]]) -> None:
    expected = expected_errors(snippet)
    assert expected, f"{snippet.name} marks no expected error"
    actual = mypy_errors.get(snippet.resolve(), [])
    assert [(e.line, e.code) for e in actual] == [(e.line, e.code) for e in expected], (
        "mypy errors differ from the marked ones:\n" + "\n".join(map(str, actual))
    )
    for want, got in zip(expected, actual, strict=True):
        assert want.message in got.message, f"line {got.line}: {got.message!r}"


def test_required_misuse_kinds_are_covered() -> None:
    marked = {error.code for path in BAD_CASES for error in expected_errors(path)}
    assert marked >= REQUIRED_CODES, f"missing: {sorted(REQUIRED_CODES - marked)}"
