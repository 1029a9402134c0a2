"""The ``:`` command line: one input line docked above the footer, with history.

Enter posts :class:`CommandLine.Run` with the text; Esc closes it. The screen decides what
running means (the batch grammar, or ``quit``).
"""

from __future__ import annotations

from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input

HISTORY_LIMIT = 200


class CommandLine(Input):
    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("up", "history(-1)", "Previous command", show=False),
        Binding("down", "history(1)", "Next command", show=False),
    ]

    class Run(Message):
        """The user entered a command line."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class Closed(Message):
        """The command line was closed without running anything."""

    def __init__(self) -> None:
        super().__init__(
            placeholder="command, e.g. groups get lab   (Enter runs, Esc closes, :quit exits)",
            id="command-line",
            compact=True,
        )
        self.history: list[str] = []
        self._position = 0

    def open(self) -> None:
        self.value = ""
        self._position = len(self.history)
        self.add_class("-open")
        self.focus()

    @property
    def is_open(self) -> bool:
        return self.has_class("-open")

    def close(self) -> None:
        self.remove_class("-open")
        self.value = ""

    def action_close(self) -> None:
        self.close()
        self.post_message(self.Closed())

    def action_history(self, step: int) -> None:
        if not self.history:
            return
        self._position = max(0, min(len(self.history), self._position + step))
        self.value = self.history[self._position] if self._position < len(self.history) else ""
        self.cursor_position = len(self.value)

    async def action_submit(self) -> None:
        text = self.value.strip()
        self.close()
        if not text:
            self.post_message(self.Closed())
            return
        if not self.history or self.history[-1] != text:
            self.history = [*self.history, text][-HISTORY_LIMIT:]
        self.post_message(self.Run(text))
