"""Runs the batch grammar for the TUI's ``:`` command line, on the app's own client.

The command line must behave exactly like ``mitosis-tui --batch``, so it calls the same
:func:`mitosis_tui.commands.runner.run_command` with an ``Output`` whose two streams are
:class:`LineStream` objects feeding the output panel line by line. The session shares the
app's client (``:login`` and ``:logout`` act on the TUI's own session) and never prompts on
the terminal, which Textual owns.
"""

from __future__ import annotations

import io
import shlex
from collections.abc import Callable

from mitosis_tui.commands.output import Output
from mitosis_tui.commands.runner import run_command
from mitosis_tui.commands.session import CommandSession, UsageError
from mitosis_tui.config import ClientSettings
from mitosis_tui.connection import Connection

__all__ = [
    "QUIT_WORDS",
    "CommandResult",
    "LineStream",
    "TuiCommandSession",
    "run_line",
    "split_line",
]

QUIT_WORDS = frozenset({"quit", "q", "exit"})


class LineStream(io.TextIOBase):
    """A text stream that hands every complete line, unchanged, to ``emit``."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        super().__init__()
        self._emit = emit
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._emit(line)
        return len(text)

    def finish(self) -> None:
        """Emit a last line that had no newline."""
        if self._partial:
            self._emit(self._partial)
            self._partial = ""


class TuiCommandSession(CommandSession):
    """A batch session on the TUI's client; passwords come from the command, never a prompt."""

    def password(self, given: str | None = None, prompt: str = "password: ") -> str:
        if given:
            return given
        raise UsageError(
            "the command line cannot ask for a password: give it as an argument"
            " (e.g. `login alice PASSWORD`)"
        )


class CommandResult:
    """What a command line did: its exit code and whether the login changed."""

    def __init__(self, code: int, identity_changed: bool, logged_out: bool) -> None:
        self.code = code
        self.identity_changed = identity_changed
        self.logged_out = logged_out


async def run_line(
    connection: Connection,
    argv: list[str],
    on_stdout: Callable[[str], None],
    on_stderr: Callable[[str], None],
) -> CommandResult:
    """Run one command of the batch grammar against the app's connection."""
    stdout, stderr = LineStream(on_stdout), LineStream(on_stderr)
    settings = ClientSettings(coordinator=connection.url, user=connection.username)
    output = Output(stdout, stderr, as_json=False)
    session = TuiCommandSession(settings, output, cache=connection.cache)
    own_client, session.client = session.client, connection.client
    await own_client.aclose()
    token_before, user_before = connection.client.token, connection.username
    try:
        code = await run_command(session, argv)
    finally:
        stdout.finish()
        stderr.finish()
    logged_out = token_before is not None and connection.client.token is None
    changed = not logged_out and (
        session.username != user_before or connection.client.token != token_before
    )
    if changed:
        connection.adopt(session.username)
    return CommandResult(code, changed, logged_out)


def split_line(text: str) -> list[str]:
    """Words of a command line as a shell would split them; UsageError on bad quoting."""
    try:
        return shlex.split(text, comments=True)
    except ValueError as exc:
        raise UsageError(f"cannot read the command line: {exc}") from None
