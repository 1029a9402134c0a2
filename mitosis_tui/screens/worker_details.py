"""Enter on a worker: everything the coordinator knows about it (FEATURES W3), and its keys.

Tags, labels, grants, state (and a pending shutdown), last heartbeat with its age against the
coordinator's timeout, slots, version, host facts and the tasks it runs (those the viewer
may read; the others are counted). The screen reloads the worker when it opens and on
``r``. The action keys are the Workers pane's own: pressing one closes the details and
dismisses with a :class:`WorkerAction`, which the pane runs on this worker.
"""

from __future__ import annotations

import enum
import shlex
from typing import TYPE_CHECKING, cast

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Static

from mitosis_sdk.schemas import TaskInfo, TaskQuery, WorkerInfo, WorkerState
from mitosis_sdk.units import format_duration, format_size
from mitosis_tui.widgets.worker_look import (
    grants_text,
    heartbeat_age,
    short_id,
    state_text,
)
from mitosis_tui.workers import api_work

if TYPE_CHECKING:
    from mitosis_tui.app import MitosisApp


class WorkerAction(enum.StrEnum):
    """What the user asked for from the details; the value names the pane's action."""

    DRAIN = "drain"
    RESUME = "resume"
    SHUTDOWN = "shutdown"
    FORCE_SHUTDOWN = "force_shutdown"
    TAGS = "edit_tags"
    LABELS = "edit_labels"
    GRANTS = "edit_grants"


def host_line(worker: WorkerInfo) -> str:
    facts = worker.facts
    parts = [
        facts.hostname,
        f"{facts.cores} cores" if facts.cores is not None else None,
        f"{format_size(facts.memory)} memory" if facts.memory is not None else None,
        " ".join(p for p in (facts.os, facts.arch) if p) or None,
        f"{facts.gpus} GPUs" if facts.gpus else None,
    ]
    return " · ".join(p for p in parts if p) or "-"


def slots_line(worker: WorkerInfo) -> str:
    line = f"{worker.slots_in_use} of {worker.slots} in use"
    if worker.held_ahead:
        line += f", {worker.held_ahead} more held ahead"
    return line


class WorkerDetailsScreen(ModalScreen[WorkerAction | None]):
    BINDINGS = [
        Binding("escape,q", "close", "Close"),
        Binding("r", "reload", "Reload", tooltip="Reload this worker"),
        Binding("d", "act('drain')", "Drain"),
        Binding("u", "act('resume')", "Resume"),
        Binding("x", "act('shutdown')", "Stop"),
        Binding("X", "act('force_shutdown')", "Force", key_display="X"),
        Binding("t", "act('edit_tags')", "Tags"),
        Binding("l", "act('edit_labels')", "Labels"),
        Binding("g", "act('edit_grants')", "Grants"),
    ]

    def __init__(self, worker: WorkerInfo, heartbeat_timeout: float) -> None:
        super().__init__(classes="modal")
        self.worker = worker
        self.heartbeat_timeout = heartbeat_timeout
        self.tasks: list[TaskInfo] | None = None

    @property
    def mitosis(self) -> MitosisApp:
        return cast("MitosisApp", self.app)

    def compose(self) -> ComposeResult:
        with Vertical(id="worker-details", classes="dialog"):
            yield Static(id="worker-details-title", classes="dialog-title")
            yield Static(id="worker-facts")
            yield Static("Running tasks", classes="section-title")
            tasks = DataTable(id="worker-tasks", cursor_type="row", show_cursor=False)
            tasks.add_column("TASK", width=8)
            tasks.add_column("GROUP", width=16)
            tasks.add_column("PHASE", width=9)
            tasks.add_column("COMMAND", width=34)
            yield tasks
            yield Static(id="worker-tasks-note", classes="note")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.show()
        self.action_reload()

    # -- showing ------------------------------------------------------------------------

    def show(self) -> None:
        worker, now = self.worker, self.mitosis.clock()
        title = Text(f"Worker {worker.uuid}  ")
        title.append_text(state_text(worker))
        self.query_one("#worker-details-title", Static).update(title)
        self.query_one("#worker-facts", Static).update(self.facts_table(worker, now))
        self.show_tasks()

    def facts_table(self, worker: WorkerInfo, now) -> Table:
        table = Table(box=None, show_header=False, padding=(0, 1, 0, 0), expand=False)
        table.add_column("field", style="bold", no_wrap=True)
        table.add_column("value")
        beat = self.heartbeat_line(worker, now)
        state = state_text(worker)
        if worker.shutdown is not None:
            state.append(f" ({worker.shutdown} shutdown ordered)")
        rows = [
            ("state", state),
            ("host", host_line(worker)),
            ("slots", slots_line(worker)),
            ("heartbeat", beat),
            ("tags", ", ".join(worker.tags) or "none: takes tasks with any tags"),
            ("labels", ", ".join(worker.labels) or "-"),
            ("grants", grants_text(worker).replace(",", ", ") or "-"),
            ("version", worker.version or "-"),
            ("creator", worker.creator),
            ("started", f"{worker.created_at.astimezone():%Y-%m-%d %H:%M:%S}"),
        ]
        for field, value in rows:
            table.add_row(field, value)
        return table

    def heartbeat_line(self, worker: WorkerInfo, now) -> Text:
        """``5s ago, at …`` and, when late, how late against the coordinator's timeout."""
        age, timeout = heartbeat_age(worker, now), self.heartbeat_timeout
        line = Text(f"{format_duration(age)} ago, at {worker.last_heartbeat.astimezone():%H:%M:%S}")
        if worker.state in (WorkerState.LOST, WorkerState.STOPPED):
            return line
        if age >= timeout:
            line.append(" !! overdue: it is lost once the coordinator looks", style="bold red")
        elif age >= timeout / 2:
            line.append(
                f" ! late: lost after {format_duration(timeout)} of silence", style="yellow"
            )
        return line

    def show_tasks(self) -> None:
        table = self.query_one("#worker-tasks", DataTable)
        note = self.query_one("#worker-tasks-note", Static)
        table.clear()
        running = self.worker.running
        table.display = bool(running)
        if not running:
            note.update("No running tasks.")
            return
        if self.tasks is None:
            for task in running:
                table.add_row(short_id(task), "…", "", "")
            note.update("")
            return
        seen = {task.uuid: task for task in self.tasks}
        for task_id in running:
            task = seen.get(task_id)
            if task is None:
                continue
            table.add_row(
                short_id(task.uuid),
                f"{task.group}#{task.seq}",
                str(task.phase or "-"),
                shlex.join(task.command),
            )
        hidden = len([t for t in running if t not in seen])
        note.update(f"{hidden} more in groups you cannot read." if hidden else "")

    # -- loading ------------------------------------------------------------------------

    def action_reload(self) -> None:
        self.load(self.worker.uuid)

    @api_work(group="worker-details")
    async def load(self, worker_id) -> None:
        self.worker = await self.mitosis.call(lambda c: c.get_worker(worker_id))
        running = self.worker.running
        if running:
            query = TaskQuery(uuids=list(running), limit=len(running))
            self.tasks = (await self.mitosis.call(lambda c: c.query_tasks(query))).tasks
        else:
            self.tasks = []
        self.show()

    # -- keys ---------------------------------------------------------------------------

    def action_close(self) -> None:
        self.dismiss(None)

    def action_act(self, action: str) -> None:
        self.dismiss(WorkerAction(action))
