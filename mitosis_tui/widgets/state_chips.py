"""The Tasks pane's state quick-filters: ``all active queued running failed completed
cancelled``, one of them in force (bracketed, so it reads in monochrome too).

``f``/``F`` on the pane step through them; a click picks one (:class:`StateChips.Picked`).
"""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

from mitosis_sdk.schemas import TaskState

__all__ = ["QUICK_FILTERS", "StateChips"]

QUICK_FILTERS: tuple[tuple[str, tuple[TaskState, ...]], ...] = (
    ("all", ()),
    ("active", (TaskState.PENDING, TaskState.READY, TaskState.RUNNING)),
    ("queued", (TaskState.PENDING, TaskState.READY)),
    ("running", (TaskState.RUNNING,)),
    ("failed", (TaskState.FAILED,)),
    ("completed", (TaskState.COMPLETED,)),
    ("cancelled", (TaskState.CANCELLED,)),
)


class StateChips(Widget):
    COMPONENT_CLASSES = {"state-chips--current"}

    current: reactive[int] = reactive(0)

    class Picked(Message):
        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def _pieces(self) -> list[tuple[str, int]]:
        """(text, start cell) of each chip: names one space apart, the current bracketed."""
        pieces, start = [], 0
        for index, (name, _) in enumerate(QUICK_FILTERS):
            text = f"[{name}]" if index == self.current else name
            pieces.append((text, start))
            start += len(text) + 1
        return pieces

    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        current = self.get_component_rich_style("state-chips--current")
        for index, (piece, _) in enumerate(self._pieces()):
            if index:
                text.append(" ")
            text.append(piece, style=current if index == self.current else "")
        return text

    def on_click(self, event: events.Click) -> None:
        for index, (piece, start) in enumerate(self._pieces()):
            if start <= event.x < start + len(piece):
                self.current = index
                self.post_message(self.Picked(index))
                return
