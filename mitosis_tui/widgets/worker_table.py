"""The Workers pane's table: one row per worker, keyed by UUID, updated in place.

Columns have fixed widths, so nothing jumps as rows load; the most telling come first (state,
host, id, slots, heartbeat) so an 80-column terminal shows them without scrolling. A reload
that brings the same workers in the same order only rewrites cells, and a single changed
worker (after an action, or from a live event) rewrites its own row: the table never
flickers and the cursor and the Space selection stay where they were.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist

from mitosis_sdk.schemas import WorkerInfo
from mitosis_tui.widgets.worker_look import grants_text, heartbeat_text, short_id, state_text

COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("mark", " ", 1),
    ("state", "STATE", 10),
    ("host", "HOST", 14),
    ("id", "ID", 8),
    ("slots", "SLOTS", 5),
    ("heartbeat", "HEARTBEAT", 9),
    ("tags", "TAGS", 14),
    ("labels", "LABELS", 12),
    ("grants", "GRANTS", 24),
    ("running", "RUNNING", 17),
    ("version", "VERSION", 8),
)
SELECTED = "✓"


class WorkerTable(DataTable):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.infos: dict[str, WorkerInfo] = {}
        self.selected: set[str] = set()
        for key, title, width in COLUMNS:
            self.add_column(title, width=width, key=key)

    # -- what is shown ------------------------------------------------------------------

    def cells(self, worker: WorkerInfo, now: datetime, timeout: float) -> list[object]:
        running = ",".join(short_id(task) for task in worker.running) or "-"
        return [
            SELECTED if str(worker.uuid) in self.selected else " ",
            state_text(worker),
            worker.facts.hostname or "-",
            short_id(worker.uuid),
            f"{worker.slots_in_use}/{worker.slots}",
            heartbeat_text(worker, now, timeout),
            ",".join(worker.tags) or Text("any", style="dim"),
            ",".join(worker.labels) or "-",
            grants_text(worker) or "-",
            running,
            worker.version or "-",
        ]

    def show(self, workers: Iterable[WorkerInfo], now: datetime, timeout: float) -> None:
        """Show exactly these workers, in this order (in place when the order is the same)."""
        workers = list(workers)
        keys = [str(worker.uuid) for worker in workers]
        self.selected &= set(keys)
        if keys == [row.key.value for row in self.ordered_rows]:
            for worker in workers:
                self.apply(worker, now, timeout)
            return
        focused = self.focused_key
        self.infos = dict(zip(keys, workers, strict=True))
        self.clear()
        for key, worker in self.infos.items():
            self.add_row(*self.cells(worker, now, timeout), key=key)
        if focused in self.infos:
            self.move_cursor(row=keys.index(focused))

    def apply(self, worker: WorkerInfo, now: datetime, timeout: float) -> None:
        """Rewrite one worker's row (added at the end when it is new)."""
        key = str(worker.uuid)
        self.infos[key] = worker
        cells = self.cells(worker, now, timeout)
        if key not in self.rows:
            self.add_row(*cells, key=key)
            return
        for (column, _, _), value in zip(COLUMNS, cells, strict=True):
            self.update_cell(key, column, value)

    def drop(self, key: str) -> None:
        self.infos.pop(key, None)
        self.selected.discard(key)
        if key in self.rows:
            self.remove_row(key)

    def tick(self, now: datetime, timeout: float) -> None:
        """Heartbeat ages grow between loads: rewrite that column only."""
        for key, worker in self.infos.items():
            try:
                self.update_cell(key, "heartbeat", heartbeat_text(worker, now, timeout))
            except CellDoesNotExist:
                continue

    # -- cursor and selection -----------------------------------------------------------

    @property
    def focused_key(self) -> str | None:
        if self.row_count == 0:
            return None
        return self.coordinate_to_cell_key((self.cursor_row, 0)).row_key.value

    @property
    def focused(self) -> WorkerInfo | None:
        key = self.focused_key
        return self.infos.get(key) if key is not None else None

    def toggle_selected(self) -> None:
        key = self.focused_key
        if key is None:
            return
        self.selected ^= {key}
        self.update_cell(key, "mark", SELECTED if key in self.selected else " ")

    def clear_selection(self) -> None:
        for key in self.selected & set(self.infos):
            self.update_cell(key, "mark", " ")
        self.selected.clear()

    def targets(self) -> list[WorkerInfo]:
        """The Space-selected workers in table order, else the one under the cursor."""
        if self.selected:
            return [
                self.infos[row.key.value]
                for row in self.ordered_rows
                if row.key.value in self.selected
            ]
        focused = self.focused
        return [focused] if focused is not None else []
