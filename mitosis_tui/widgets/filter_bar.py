"""A pane's ``/`` filter: one input line at the top of the pane, hidden until asked for.

Enter posts :class:`FilterBar.Applied` with the text (empty: no filter) and hides the line;
Esc hides it and changes nothing. The pane parses the text and says what it means.
"""

from __future__ import annotations

from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input


class FilterBar(Input):
    BINDINGS = [Binding("escape", "close", "Close filter")]

    class Applied(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class Closed(Message):
        """Closed without applying anything."""

    def __init__(self, placeholder: str, *, id: str | None = None) -> None:
        super().__init__(placeholder=placeholder, id=id, compact=True, classes="filter-bar")

    def open(self, current: str) -> None:
        self.value = current
        self.cursor_position = len(current)
        self.add_class("-open")
        self.focus()

    @property
    def is_open(self) -> bool:
        return self.has_class("-open")

    def action_close(self) -> None:
        self.remove_class("-open")
        self.post_message(self.Closed())

    async def action_submit(self) -> None:
        self.remove_class("-open")
        self.post_message(self.Applied(self.value.strip()))
