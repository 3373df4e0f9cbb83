"""The client's typed surface under mypy --strict: the example application passes with
the project's settings (no ignores, no casts), and misuse of the API is rejected."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mypy import api as mypy_api

MISUSE = """\
from client import ClientConfig, SyncClient


async def misuse(client: SyncClient) -> None:
    await client.publish("doc", "text, not bytes")  # E: arg-type
    await client.subscribe("doc", join_presence="yes")  # E: arg-type
    async for event in client:
        print(event.offset)  # E: union-attr
    ClientConfig(outbox_limit="10")  # E: arg-type
    client.set_presence("doc", action=7)  # E: arg-type
    ack = await client.publish("doc", b"x")
    print(ack.ofset)  # E: attr-defined
    client.subscribe("doc").offset  # E: attr-defined
"""

_ERROR = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")


@pytest.mark.timeout(120)
def test_example_passes_and_misuse_is_rejected(
    repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo_root)  # the config's paths are relative to the checkout
    example = repo_root / "examples" / "client_app.py"
    misuse = tmp_path / "misuse.py"
    misuse.write_text(MISUSE)
    out, err, status = mypy_api.run(
        [
            "--config-file",
            "pyproject.toml",
            "--strict",
            "--no-incremental",
            str(example),
            str(misuse),
        ]
    )
    assert status == 1, out + err  # ran, and found errors (only in the misuse file)
    errors = [m for line in out.splitlines() if (m := _ERROR.match(line))]
    assert not [e for e in errors if Path(e["path"]).name == example.name], out + err
    found = sorted({(int(e["line"]), e["code"]) for e in errors if e["path"].endswith("misuse.py")})
    expected = [
        (number, line.split("# E: ")[1])
        for number, line in enumerate(MISUSE.splitlines(), start=1)
        if "# E: " in line
    ]
    assert found == expected, out + err
