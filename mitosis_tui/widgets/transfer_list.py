"""Uploads and downloads in flight, one line each with a progress bar.

The SDK calls a transfer's progress callback for every chunk it moves (a MiB at a time,
and negative when a retry sends bytes again); those calls only add to a counter. A timer
redraws the lines a few times a second while anything moves, so a fast transfer never floods
the UI with messages, and the widget takes no room when nothing is in flight.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from rich.text import Text
from textual.widgets import Static

from mitosis_sdk.units import format_size

REDRAW_SECONDS = 0.2
BAR_WIDTH = 16


@dataclass
class Transfer:
    """One transfer's counters; ``advance`` is the SDK's progress callback."""

    id: int
    arrow: str  # ↑ upload, ↓ download
    name: str
    size: int
    done: int = field(default=0)

    def advance(self, count: int) -> None:
        self.done = max(0, self.done + count)

    def line(self, width: int) -> Text:
        share = min(1.0, self.done / self.size) if self.size else 1.0
        filled = round(share * BAR_WIDTH)
        text = Text(f"{self.arrow} ")
        text.append("█" * filled, style="green")
        text.append("░" * (BAR_WIDTH - filled), style="dim")
        text.append(f" {share:>4.0%} {format_size(self.done)}/{format_size(self.size)} ")
        room = max(8, width - text.cell_len)
        name = self.name if len(self.name) <= room else "…" + self.name[-(room - 1) :]
        text.append(name)
        return text


class TransferList(Static):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, classes="transfers")
        self.active: dict[int, Transfer] = {}
        self._ids = itertools.count(1)

    def on_mount(self) -> None:
        self.display = False
        self.set_interval(REDRAW_SECONDS, self._redraw)

    def start(self, arrow: str, name: str, size: int) -> Transfer:
        transfer = Transfer(next(self._ids), arrow, name, size)
        self.active[transfer.id] = transfer
        self.display = True
        self._redraw()
        return transfer

    def finish(self, transfer: Transfer) -> None:
        self.active.pop(transfer.id, None)
        self.display = bool(self.active)
        self._redraw()

    def _redraw(self) -> None:
        if not self.active:
            return
        width = self.size.width or 60
        self.update(Text("\n").join(t.line(width) for t in self.active.values()))
