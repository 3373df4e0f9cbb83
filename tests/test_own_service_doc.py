"""docs/your-own-service.md section 7 (type-check it), followed as written: the packages
it installs hold the stubs mypy needs for the greeter client of section 6, and
``mypy --strict`` on that client plus section 7's misuse lines reports exactly the
errors section 7 documents."""

from __future__ import annotations

import contextlib
import importlib.metadata
import re
import textwrap
from pathlib import Path

import pytest
from mypy import api as mypy_api

DOC = Path("docs/your-own-service.md")
# grpcio and protobuf ship no types; mypy reads these stub-only packages instead.
STUB_PACKAGES = ("grpc-stubs", "google-stubs")


def section(text: str, heading: str) -> str:
    """The text under `heading` up to the next ``## `` heading."""
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def blocks(text: str, language: str) -> list[str]:
    """The fenced code blocks of `language` in `text`."""
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def test_section_7_names_the_stub_packages_mypy_needs(repo_root: Path) -> None:
    typing = section((repo_root / DOC).read_text(), "## 7. Type-check it")
    installs = [
        line.split("#")[0].split()[2:]
        for block in blocks(typing, "sh")
        for line in block.splitlines()
        if line.startswith("pip install ")
    ]
    assert installs, "section 7 installs nothing"
    named = set(installs[0])
    providers = importlib.metadata.packages_distributions()
    for stubs in STUB_PACKAGES:
        assert set(providers[stubs]) & named, f"section 7 does not install {providers[stubs]}"
    assert "mypy" in named


@pytest.mark.timeout(300)
def test_section_7_errors_are_the_documented_ones(
    repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (repo_root / DOC).read_text()
    client = blocks(section(text, "## 6. Call it"), "python")[0].splitlines()
    misuse = blocks(section(text, "## 7. Type-check it"), "python")[0].splitlines()
    imports = [line for line in client if line.startswith(("import ", "from "))]
    body = [line for line in client if line not in imports] + misuse
    source = "\n".join(
        [*imports, "", "", "async def main() -> None:", textwrap.indent("\n".join(body), "    ")]
    )
    checked = tmp_path / "your_client.py"
    checked.write_text(source + "\n")
    first_misuse = len(imports) + 3 + len(body) - len(misuse) + 1
    documented = {
        first_misuse + index: line.split("# error: ", 1)[1]
        for index, line in enumerate(misuse)
        if "# error: " in line
    }
    # generated/ on MYPYPATH as section 7 says; the checkout first, as for PYTHONPATH.
    monkeypatch.setenv("MYPYPATH", f"{repo_root / 'examples/greeter/generated'}:{repo_root}")
    with contextlib.chdir(tmp_path):  # no project configuration: plain --strict
        stdout, stderr, status = mypy_api.run(
            ["--strict", "--no-pretty", "--cache-dir", str(tmp_path / "cache"), checked.name]
        )
    assert status == 1, stderr + stdout
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    found = {int(line.split(":")[1]): line for line in errors}
    assert sorted(found) == sorted(documented), stdout + source
    for number, words in documented.items():
        assert words in found[number], (words, found[number])
