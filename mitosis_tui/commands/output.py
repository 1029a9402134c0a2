"""What a command prints: data on stdout (a rich table, or JSON with ``--json``),
diagnostics on stderr. Nothing else in the batch path writes to the terminal."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import IO, Any

import msgspec
from rich.console import Console
from rich.table import Table

Column = tuple[str, Callable[[Any], Any]]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, list | tuple | set):
        return ",".join(str(v) for v in value) or "-"
    return str(value)


def _console(stream: IO[str]) -> Console:
    # A pipe or file gets whole lines: wrapped or truncated cells (a UUID cut to "b2c9…")
    # would break the scripts reading them. A terminal keeps rich's fitting to its width.
    wide = None if getattr(stream, "isatty", lambda: False)() else 4096
    return Console(file=stream, highlight=False, soft_wrap=True, width=wide)


class Output:
    def __init__(self, stdout: IO[str], stderr: IO[str], as_json: bool) -> None:
        self.as_json = as_json
        self._stdout = stdout
        self._out = _console(stdout)
        self._err = _console(stderr)

    @property
    def diagnostics(self) -> Console:
        """The stderr console (progress bars draw there, only when it is a terminal)."""
        return self._err

    def json(self, value: Any) -> None:
        self._stdout.write(msgspec.json.encode(value).decode() + "\n")
        self._stdout.flush()

    def table(self, rows: Sequence[Any], columns: Sequence[Column], *, raw: Any = None) -> None:
        """Rows as a table, or (``--json``) ``raw`` (default: the rows) as JSON."""
        if self.as_json:
            self.json(rows if raw is None else raw)
            return
        table = Table(box=None, pad_edge=False, header_style="bold")
        for title, _ in columns:
            table.add_column(title)
        for row in rows:
            table.add_row(*(_cell(get(row)) for _, get in columns))
        self._out.print(table)

    def record(self, value: Any, fields: Sequence[Column]) -> None:
        """One object as ``field: value`` lines, or JSON."""
        if self.as_json:
            self.json(value)
            return
        width = max(len(title) for title, _ in fields)
        for title, get in fields:
            self._out.print(f"{title.ljust(width)}  {_cell(get(value))}")

    def line(self, text: str) -> None:
        """One bare data line on stdout (a UUID a script captures); nothing with --json."""
        if not self.as_json:
            self._stdout.write(text + "\n")
            self._stdout.flush()

    def done(self, message: str, value: Any = None) -> None:
        """A confirmation: to stderr for humans; ``{"ok": true, ...}`` on stdout with --json."""
        if self.as_json:
            self.json(value if value is not None else {"ok": True})
        else:
            self._err.print(message)

    def info(self, message: str) -> None:
        self._err.print(message)

    def error(self, message: str) -> None:
        self._err.print(f"error: {message}", style="red" if self._err.is_terminal else None)
