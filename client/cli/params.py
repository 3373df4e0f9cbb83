"""Click parameter types shared by the commands."""

from __future__ import annotations

import os
from typing import Any

import click


class Utf8Text(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.3
    """Text that must be valid UTF-8 (collection ids, user ids, tokens: protobuf strings
    and metadata). Python decodes command-line bytes that are not UTF-8 to lone
    surrogates; those are refused with one usage line instead of failing later."""

    name = "text"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        """`value` as text; fails (one usage line, exit 2) when it is not valid UTF-8."""
        text = str(value)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            self.fail(f"{os.fsencode(text)!r} is not valid UTF-8", param, ctx)
        return text


UTF8_TEXT = Utf8Text()
"""The shared `Utf8Text` instance."""
