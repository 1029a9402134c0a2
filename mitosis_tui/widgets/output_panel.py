"""Pane 5: what ``:`` commands printed, exactly as ``--batch`` prints it, and the app's errors.

Lines arrive one by one from the command's stdout and stderr streams and are shown unchanged
(no markup is interpreted). Errors -- ``error: ...`` lines, failing exit codes, and the
app's own error reports -- are red, and always carry words, so they read in monochrome too.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import RichLog

from mitosis_tui.widgets.pane import Pane

MAX_LINES = 10_000


class OutputPanel(Pane):
    TITLE = "Output"
    loads_data = False

    BINDINGS = [Binding("c", "clear_output", "Clear", tooltip="Clear the output panel")]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.transcript: list[str] = []

    def compose(self) -> ComposeResult:
        yield RichLog(
            id="output-log", wrap=False, markup=False, highlight=False, max_lines=MAX_LINES
        )

    @property
    def log_view(self) -> RichLog:
        return self.query_one("#output-log", RichLog)

    def _write(self, text: str, style: str = "") -> None:
        self.transcript.append(text)
        self.transcript = self.transcript[-MAX_LINES:]
        self.log_view.write(Text(text, style=style))

    def begin(self, command: str) -> None:
        self._write(f": {command}", "bold")

    def stdout(self, line: str) -> None:
        self._write(line)

    def stderr(self, line: str) -> None:
        self._write(line, "red" if line.startswith("error:") else "")

    def end(self, code: int) -> None:
        if code != 0:
            self._write(f"(exit status {code})", "red")
        self._write("")

    def error(self, message: str) -> None:
        """An error the app reported (also shown as a notification)."""
        self._write(f"error: {message}", "red")

    def action_clear_output(self) -> None:
        self.transcript.clear()
        self.log_view.clear()

    def focus_target(self) -> Widget:
        return self.log_view
