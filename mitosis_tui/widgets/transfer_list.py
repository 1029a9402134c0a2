"""Uploads and downloads in flight, one line each with a progress bar and a Cancel button.

The SDK calls a transfer's progress callback for every chunk it moves (a MiB at a time,
and negative when a retry sends bytes again); those calls only add to a counter. A timer
redraws the lines a few times a second while anything moves, so a fast transfer never floods
the UI with messages, and the widget takes no room when nothing is in flight.

Cancelling a transfer cancels the Textual worker moving its bytes (for a folder, the whole
folder's worker): the SDK then drops a partial download and aborts an upload, so the
coordinator keeps nothing of it. Once every byte has moved the transfer is *finishing* (the
file is being put in place, or the coordinator is recording it) and is no longer cancelled:
stopping it then could leave the file complete while the screen said it was not.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Static
from textual.worker import Worker

from mitosis_sdk.units import format_size

__all__ = ["Transfer", "TransferList"]

REDRAW_SECONDS = 0.2
BAR_WIDTH = 16
MIN_BAR = 4
NAME_ROOM = 16  # cells the name keeps before the bar grows


@dataclass
class Transfer:
    """One transfer's counters; ``advance`` is the SDK's progress callback; ``job`` is the
    worker that moves the bytes."""

    id: int
    arrow: str  # ↑ upload, ↓ download
    name: str
    size: int
    job: Worker | None = None
    done: int = field(default=0)

    def advance(self, count: int) -> None:
        self.done = max(0, self.done + count)

    @property
    def finishing(self) -> bool:
        return self.done >= self.size

    @property
    def can_cancel(self) -> bool:
        return self.job is not None and not self.job.is_cancelled and not self.finishing

    def cancel(self) -> bool:
        """Stop the transfer's worker; False when it is finishing (or already stopped)."""
        if not self.can_cancel:
            return False
        self.job.cancel()
        return True

    def line(self, width: int) -> Text:
        """``width`` cells at most; a narrow line shortens the bar before the name."""
        share = min(1.0, self.done / self.size) if self.size else 1.0
        counts = f" {share:>4.0%} {format_size(self.done)}/{format_size(self.size)} "
        bar = max(MIN_BAR, min(BAR_WIDTH, width - 2 - len(counts) - NAME_ROOM))
        filled = round(share * bar)
        text = Text(f"{self.arrow} ")
        text.append("█" * filled, style="green")
        text.append("░" * (bar - filled), style="dim")
        text.append(counts)
        room = max(8, width - text.cell_len)
        name = self.name if len(self.name) <= room else "…" + self.name[-(room - 1) :]
        text.append(name)
        return text


class TransferRow(Horizontal):
    """One transfer: its line, and a button that cancels it."""

    def __init__(self, transfer: Transfer) -> None:
        super().__init__(classes="transfer")
        self.transfer = transfer
        self._line = Static("", classes="transfer-line")
        self._button = Button("Cancel", compact=True, classes="transfer-cancel")

    def compose(self) -> ComposeResult:
        yield self._line
        yield self._button

    def redraw(self) -> None:
        self._line.update(self.transfer.line(self._line.size.width or 60))
        self._button.disabled = not self.transfer.can_cancel

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.post_message(TransferList.CancelPressed(self.transfer))


class TransferList(Vertical):
    class CancelPressed(Message):
        def __init__(self, transfer: Transfer) -> None:
            super().__init__()
            self.transfer = transfer

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="transfers")
        self.active: dict[int, Transfer] = {}
        self._ids = itertools.count(1)

    def on_mount(self) -> None:
        self.display = False
        self.set_interval(REDRAW_SECONDS, self._redraw)

    def start(self, arrow: str, name: str, size: int, job: Worker | None) -> Transfer:
        transfer = Transfer(next(self._ids), arrow, name, size, job)
        self.active[transfer.id] = transfer
        row = TransferRow(transfer)
        self.mount(row)
        self.display = True
        row.redraw()
        self.refresh_bindings()
        return transfer

    def finish(self, transfer: Transfer) -> None:
        self.active.pop(transfer.id, None)
        for row in self.query(TransferRow):
            if row.transfer is transfer:
                row.remove()
        self.display = bool(self.active)
        self.refresh_bindings()

    def cancel_newest(self) -> bool:
        """Cancel the most recently started transfer that still can be; False if none."""
        return any(t.cancel() for t in reversed(self.active.values()))

    def _redraw(self) -> None:
        for row in self.query(TransferRow):
            row.redraw()
