"""argparse pieces every command family uses."""

from __future__ import annotations

import argparse
import uuid
from typing import Any, NoReturn

import msgspec

from mitosis_tui.commands.session import UsageError


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so script mode can go on after a typo."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def subcommands(parser: argparse.ArgumentParser, dest: str):
    """A required group of subcommands under ``parser``."""
    group = parser.add_subparsers(dest=dest, metavar="SUBCOMMAND", parser_class=Parser)
    group.required = True
    return group


def split_list(values: list[str] | str | None) -> list[str]:
    """``a,b`` and repeated options both give lists (C2: comma-separated or repeated)."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def parse_uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise UsageError(f"{text!r} is not a UUID") from None


def build(struct: Any, *args: Any, **fields: Any) -> Any:
    """A wire Struct from command-line values; a broken rule is a usage error (status 2)."""
    try:
        return struct(*args, **fields)
    except (ValueError, TypeError, msgspec.ValidationError) as exc:
        raise UsageError(str(exc)) from None
