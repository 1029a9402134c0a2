"""A pane whose coordinator API has not arrived yet (Tasks and Workers, for now)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from mitosis_tui.widgets.pane import Pane


class PlaceholderPane(Pane):
    loads_data = False

    def __init__(self, title: str, message: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.heading = title
        self.message = message

    def compose(self) -> ComposeResult:
        yield Static(f"{self.heading}\n\n{self.message}", classes="placeholder")
