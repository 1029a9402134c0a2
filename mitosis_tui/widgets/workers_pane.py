"""Pane 2: the workers the user can see, and managing them (FEATURES W3, W4, C1).

The table (:class:`WorkerTable`) shows state with colour *and* symbol, host, tags, labels,
grants, slots, running tasks, heartbeat age and version. ``/`` filters (``state:``, ``tag:``,
``label:``, ``group:``, ``creator:`` go to the coordinator; other words match here). Actions
apply to the Space-selected workers, or to the one under the cursor: drain, resume, graceful
and forced shutdown (each confirmed, saying what happens to running tasks), replace tags or
labels, set grants. Each worker is changed by its own call, so one the user may not manage
is reported by name (the coordinator's words) and the others still change.

Live: the pane follows the app's event stream (:mod:`mitosis_tui.live`). Worker events say a
worker's state changed; task events move slots in use and running tasks. Either marks the
page stale, and the next tick (once a second) reads it again while the pane is visible, so a
flood of task events costs one query a second; a hidden pane reloads when shown. An action's
answer goes straight on the page (:meth:`apply_worker`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import DataTable, Static

from mitosis_sdk.client import AsyncClient
from mitosis_sdk.schemas import Grant, WorkerInfo, WorkerPage
from mitosis_sdk.schemas.events import EventKind
from mitosis_tui.live import LiveStream
from mitosis_tui.screens.confirm import ConfirmScreen
from mitosis_tui.screens.worker_details import WorkerAction, WorkerDetailsScreen
from mitosis_tui.screens.worker_forms import GrantsForm, ValuesForm
from mitosis_tui.widgets.filter_bar import FilterBar
from mitosis_tui.widgets.pane import Pane
from mitosis_tui.widgets.worker_look import DEFAULT_HEARTBEAT_TIMEOUT, short_id
from mitosis_tui.widgets.worker_table import WorkerTable
from mitosis_tui.worker_filter import FILTER_HELP, WorkerFilterText
from mitosis_tui.workers import Reported, api_work

PAGE_SIZE = 500
TICK_SECONDS = 1.0
WORKER_ACTIONS = {action.value for action in WorkerAction}

Change = Callable[[AsyncClient, WorkerInfo], Awaitable[WorkerInfo]]


def _names(workers: list[WorkerInfo]) -> str:
    if len(workers) == 1:
        worker = workers[0]
        host = worker.facts.hostname
        return f"worker {short_id(worker.uuid)}" + (f" on {host}" if host else "")
    return f"{len(workers)} workers"


def _running(workers: list[WorkerInfo]) -> int:
    return sum(len(worker.running) for worker in workers)


class WorkersPane(Pane):
    TITLE = "Workers"

    BINDINGS = [
        Binding("enter", "details", "Details", tooltip="Show the worker under the cursor"),
        Binding(
            "space", "toggle_select", "Select", show=False, tooltip="Select or unselect the worker"
        ),
        Binding("slash", "filter", "Filter", key_display="/", tooltip="Filter the workers"),
        Binding("d", "drain", "Drain", tooltip="Drain: finish running tasks, take no new ones"),
        Binding("u", "resume", "Resume", tooltip="Resume: take tasks again after a drain"),
        Binding("x", "shutdown", "Stop", tooltip="Graceful shutdown: drain, then exit"),
        Binding(
            "X",
            "force_shutdown",
            "Force",
            key_display="X",
            tooltip="Forced shutdown: kill tasks (requeued), exit",
        ),
        Binding("t", "edit_tags", "Tags", tooltip="Replace the tags of the worker(s)"),
        # Left out of the footer (80 columns hold only so much); ? and Ctrl+P list them, and
        # the details screen's footer shows them.
        Binding(
            "l",
            "edit_labels",
            "Labels",
            show=False,
            tooltip="Replace the labels of the worker(s)",
        ),
        Binding(
            "g",
            "edit_grants",
            "Grants",
            show=False,
            tooltip="Set which groups may use the worker(s)",
        ),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.filter = WorkerFilterText()
        self.heartbeat_timeout = DEFAULT_HEARTBEAT_TIMEOUT
        self.total = 0
        self._stale = False  # an event moved something on this page since it was read

    def compose(self) -> ComposeResult:
        yield FilterBar(f"filter: {FILTER_HELP}", id="worker-filter")
        yield WorkerTable(id="workers")
        yield Static("", id="workers-note", classes="note")

    def on_mount(self) -> None:
        self.set_interval(TICK_SECONDS, self._tick)
        self.mitosis.live.subscribe(self, {EventKind.WORKER_STATE, EventKind.TASK_STATE})

    def on_live_stream_events(self, _message: LiveStream.Events) -> None:
        self._stale = True

    def on_live_stream_resync(self, _message: LiveStream.Resync) -> None:
        self._stale = True

    @property
    def table(self) -> WorkerTable:
        return self.query_one(WorkerTable)

    def focus_target(self) -> Widget:
        return self.table

    # -- loading ------------------------------------------------------------------------

    def load(self) -> None:
        self.load_workers(self.filter)

    @api_work(group="workers-list")
    async def load_workers(self, chosen: WorkerFilterText) -> None:
        query = chosen.query(PAGE_SIZE)
        page = await self.mitosis.call(lambda c: c.query_workers(query))
        if chosen == self.filter:
            self.show_page(page)

    def show_page(self, page: WorkerPage) -> None:
        self.heartbeat_timeout = page.heartbeat_timeout
        self.total = page.total
        shown = [worker for worker in page.workers if self.filter.matches(worker)]
        self.table.show(shown, self.mitosis.clock(), self.heartbeat_timeout)
        self.describe()

    def apply_worker(self, info: WorkerInfo) -> None:
        """Put one changed worker on the page, or take it off if it no longer matches."""
        key = str(info.uuid)
        if self.filter.matches(info):
            self.table.apply(info, self.mitosis.clock(), self.heartbeat_timeout)
        else:
            self.table.drop(key)
        self.describe()

    def clear(self) -> None:
        super().clear()
        self.table.show([], self.mitosis.clock(), self.heartbeat_timeout)
        self.total = 0
        self.query_one("#workers-note", Static).update("")

    def describe(self) -> None:
        table = self.table
        parts = [f"{len(table.selected)} selected"] if table.selected else []
        parts.append(f"{table.row_count} of {self.total} worker(s)")
        if self.total > PAGE_SIZE:
            parts.append(f"the newest {PAGE_SIZE}; narrow with /")
        if self.filter.text:
            parts.append(f"filter: {self.filter.text}")
        else:
            parts.append("stopped ones hidden (/ state:stopped)")
        self.query_one("#workers-note", Static).update(" · ".join(parts))
        self.refresh_bindings()

    def _tick(self) -> None:
        if self._stale:
            self._stale = False
            if self.is_on_screen:
                self.reload()
            else:
                self.loaded_at = None  # read again when shown
        if self.is_on_screen and self.table.row_count:
            self.table.tick(self.mitosis.clock(), self.heartbeat_timeout)

    # -- filter and selection -----------------------------------------------------------

    def action_filter(self) -> None:
        self.query_one(FilterBar).open(self.filter.text)

    def on_filter_bar_applied(self, event: FilterBar.Applied) -> None:
        event.stop()
        try:
            self.filter = WorkerFilterText.parse(event.text)
        except ValueError as exc:
            self.notify(str(exc), title="Filter", severity="warning", markup=False)
            self.query_one(FilterBar).open(event.text)
            return
        self.table.clear_selection()
        self.focus_default()
        self.reload()

    def on_filter_bar_closed(self, event: FilterBar.Closed) -> None:
        event.stop()
        self.focus_default()

    def action_toggle_select(self) -> None:
        self.table.toggle_selected()
        self.table.action_cursor_down()
        self.describe()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_details()

    # -- details ------------------------------------------------------------------------

    def action_details(self) -> None:
        worker = self.table.focused
        if worker is None:
            self.notify("No worker under the cursor.", severity="warning")
            return

        def chosen(action: WorkerAction | None) -> None:
            if action is not None:
                self.run_on([self.table.infos.get(str(worker.uuid), worker)], action)

        self.app.push_screen(WorkerDetailsScreen(worker, self.heartbeat_timeout), chosen)

    def _targets(self) -> list[WorkerInfo]:
        targets = self.table.targets()
        if not targets:
            self.notify("No worker under the cursor.", severity="warning")
        return targets

    def run_on(self, workers: list[WorkerInfo], action: WorkerAction) -> None:
        """Run one of the pane's actions on these workers (from the details screen)."""
        starts = {
            WorkerAction.DRAIN: self._drain,
            WorkerAction.RESUME: self._resume,
            WorkerAction.SHUTDOWN: lambda w: self._shutdown(w, force=False),
            WorkerAction.FORCE_SHUTDOWN: lambda w: self._shutdown(w, force=True),
            WorkerAction.TAGS: self._edit_tags,
            WorkerAction.LABELS: self._edit_labels,
            WorkerAction.GRANTS: self._edit_grants,
        }
        starts[action](workers)

    # -- actions ------------------------------------------------------------------------

    def action_drain(self) -> None:
        if targets := self._targets():
            self._drain(targets)

    def action_resume(self) -> None:
        if targets := self._targets():
            self._resume(targets)

    def action_shutdown(self) -> None:
        if targets := self._targets():
            self._shutdown(targets, force=False)

    def action_force_shutdown(self) -> None:
        if targets := self._targets():
            self._shutdown(targets, force=True)

    def action_edit_tags(self) -> None:
        if targets := self._targets():
            self._edit_tags(targets)

    def action_edit_labels(self) -> None:
        if targets := self._targets():
            self._edit_labels(targets)

    def action_edit_grants(self) -> None:
        if targets := self._targets():
            self._edit_grants(targets)

    def _drain(self, workers: list[WorkerInfo]) -> None:
        self.change(workers, "drained", lambda c, w: c.drain_worker(w.uuid))

    def _resume(self, workers: list[WorkerInfo]) -> None:
        self.change(workers, "resumed", lambda c, w: c.resume_worker(w.uuid))

    def _shutdown(self, workers: list[WorkerInfo], *, force: bool) -> None:
        running = _running(workers)
        who = _names(workers)
        one = len(workers) == 1
        its, they = ("its", "it") if one else ("their", "they")
        if force:
            question = (
                f"Force {who} to shut down now?\n\n{its.capitalize()} {running} running task(s)"
                " are killed at once and go back to the queue for another worker (while"
                f" attempts remain); then {they} exit{'s' if one else ''}."
            )
            yes, done = "Force shutdown", "ordered to force shutdown"
        else:
            question = (
                f"Shut down {who} gracefully?\n\n{they.capitalize()} take{'s' if one else ''} no"
                f" new tasks, let{'s' if one else ''} {its} {running} running task(s) finish,"
                f" then exit{'s' if one else ''}."
            )
            yes, done = "Shut down", "ordered to shut down"
        question += "\n\nA busy worker hears the order at its next heartbeat."

        def confirmed(answer: bool | None) -> None:
            if answer:
                self.change(workers, done, lambda c, w: c.shutdown_worker(w.uuid, force=force))

        self.app.push_screen(ConfirmScreen(question, yes), confirmed)

    def _edit_tags(self, workers: list[WorkerInfo]) -> None:
        form = ValuesForm(
            f"Tags of {_names(workers)}",
            "tags",
            workers[0].tags,
            "Capabilities: the worker takes a task only if it has every tag of the task."
            " None: it takes tasks with any tags.",
        )

        def submitted(tags: list[str] | None) -> None:
            if tags is not None:
                self.change(workers, "retagged", lambda c, w: c.update_worker_tags(w.uuid, tags))

        self.app.push_screen(form, submitted)

    def _edit_labels(self, workers: list[WorkerInfo]) -> None:
        form = ValuesForm(
            f"Labels of {_names(workers)}",
            "labels",
            workers[0].labels,
            "Free metadata for finding workers; labels never affect scheduling.",
        )

        def submitted(labels: list[str] | None) -> None:
            if labels is not None:
                self.change(
                    workers, "relabelled", lambda c, w: c.update_worker_labels(w.uuid, labels)
                )

        self.app.push_screen(form, submitted)

    def _edit_grants(self, workers: list[WorkerInfo]) -> None:
        form = GrantsForm(f"Grants of {_names(workers)}", workers[0].grants)

        def submitted(grants: list[Grant] | None) -> None:
            if grants is not None:
                self.change(workers, "given new grants", lambda c, w: set_grants(c, w, grants))

        self.app.push_screen(form, submitted)

    @api_work(group="worker-change", exclusive=False)
    async def change(self, workers: list[WorkerInfo], done: str, operation: Change) -> None:
        """Apply ``operation`` to each worker in turn; say how many changed, and reload."""
        changed = 0
        for worker in workers:
            try:
                info = await self.mitosis.call(lambda c, w=worker: operation(c, w))
            except Reported:  # the coordinator's message has been shown; go on with the rest
                continue
            changed += 1
            self.apply_worker(info)
        if changed:
            if len(workers) == 1:
                self.notify(f"{_names(workers).capitalize()} {done}.")
            else:
                self.notify(f"{changed} of {len(workers)} workers {done}.")
        self.table.clear_selection()
        self.reload()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in WORKER_ACTIONS and self.table.row_count == 0:
            return None  # greyed out until there is a worker to act on
        return True


async def set_grants(client: AsyncClient, worker: WorkerInfo, grants: list[Grant]) -> WorkerInfo:
    """Make the worker's grants exactly ``grants``: change what differs, remove the rest."""
    current = {grant.group: grant.role for grant in worker.grants}
    wanted = {grant.group: grant.role for grant in grants}
    info = worker
    changes = [grant for grant in grants if current.get(grant.group) != grant.role]
    if changes:
        info = await client.update_worker_grants(worker.uuid, changes)
    removed = [group for group in current if group not in wanted]
    if removed:
        info = await client.remove_worker_grants(worker.uuid, removed)
    return info
