"""Pane 1, the home pane: every task of the chosen group, live, at any scale.

Layout: a toolbar (group selector, state quick-filters), the ``/`` filter line (hidden until
used), the virtual :class:`TaskTable`, and a summary line (how many match, how many are
selected, the sort and filter in force).

Data: the coordinator filters, sorts and counts; :class:`TaskWindow` holds the chunks near
the viewport and one worker reads the chunks it lacks, nearest first. Events from the app's
live stream patch the rows they name at once and, at most once a second, the visible chunks
are read again (so new tasks appear and changed ones move); nothing reloads periodically but
the app's slow backstop. The cursor stays on its task when rows are inserted above it,
unless it is on the first row (then new tasks show up under it, like ``tail -f``).

Sorting is the coordinator's too (so it holds across every page): ``s`` moves the sort to
the next sortable column on screen, ``S`` reverses it, a click on a header sorts by that
column (again: reverses). Each column starts in the direction an operator reads it in
(:data:`~mitosis_tui.widgets.task_columns.COLUMNS`).

Actions (see :mod:`mitosis_tui.widgets.task_actions`) act on the selected tasks (Space), or
on the task under the cursor when nothing is selected.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime

from rich.text import Text
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Input, Label, Select, Static
from textual.worker import get_current_worker

from mitosis_sdk.schemas import Role, SortOrder, TaskInfo, TaskQuery, TaskSort
from mitosis_sdk.schemas.events import EventKind
from mitosis_tui.filter_terms import FilterError, parse_filter
from mitosis_tui.live import LiveStream
from mitosis_tui.screens.task_details import TaskDetailsScreen
from mitosis_tui.screens.task_forms import SubmitForm
from mitosis_tui.task_window import TaskWindow
from mitosis_tui.widgets.pane import Pane
from mitosis_tui.widgets.state_chips import QUICK_FILTERS, StateChips
from mitosis_tui.widgets.task_actions import TASK_BINDINGS, TaskActions
from mitosis_tui.widgets.task_columns import SORTABLE, Column, short_id
from mitosis_tui.widgets.task_table import TaskTable
from mitosis_tui.workers import api_work

__all__ = ["TasksPane"]

REFETCH_EVERY = 1.0  # seconds between re-reads of the visible rows while events flow
ALL_GROUPS = ""


class TasksPane(TaskActions, Pane):
    TITLE = "Tasks"

    BINDINGS = [
        Binding("enter", "details", "Details", tooltip="Show the task's details"),
        *TASK_BINDINGS,
        Binding("n", "new_task", "New", tooltip="Submit a task (form)"),
        Binding("slash", "filter", "Filter", key_display="/", tooltip="Filter: text, tag:, …"),
        Binding("space", "toggle_select", "Select", key_display="␣", tooltip="Select or unselect"),
        Binding("escape", "clear_selection", "Unselect", show=False, tooltip="Clear selection"),
        Binding("f", "quick_filter(1)", "States", show=False, tooltip="Next state quick-filter"),
        Binding("F", "quick_filter(-1)", "States back", show=False, tooltip="Previous one"),
        Binding("s", "next_sort", "Sort", show=False, tooltip="Sort by the next column"),
        Binding("S", "reverse_sort", "Reverse", show=False, tooltip="Reverse the sort ▼▲"),
        Binding("g", "choose_group", "Group", show=False, tooltip="Choose the group shown"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.window = TaskWindow()
        self.selected: set[uuid.UUID] = set()
        self.group = ALL_GROUPS
        self.quick = 0
        self.filter_text = ""
        self.filter_fields: dict[str, object] = {}
        self.sort: tuple[TaskSort, bool] = (TaskSort.CREATED, True)  # (column, descending)
        self._visible = (0, 40)
        self._fetcher = None
        self._refetch_timer = None
        self._last_refetch = 0.0
        self._goto: uuid.UUID | None = None
        self.table = TaskTable(self, id="tasks-table")  # held: workers use it after awaits

    def compose(self) -> ComposeResult:
        with Horizontal(id="tasks-toolbar"):
            yield Select(
                [("all groups", ALL_GROUPS)],
                value=ALL_GROUPS,
                allow_blank=False,
                compact=True,
                id="tasks-group",
            )
            yield StateChips(id="tasks-states")
        with Horizontal(id="tasks-filter-row"):
            yield Label("/", id="tasks-filter-prompt")
            yield Input(
                placeholder="words in the command, tag:T label:L state:S creator:U exit:!=0",
                id="tasks-filter",
                compact=True,
            )
        yield self.table
        yield Static(id="tasks-summary")

    def on_mount(self) -> None:
        self.mitosis.live.subscribe(self, {EventKind.TASK_STATE, EventKind.TASK_PHASE})
        self.watch(self.mitosis, "identity", self._identity_changed)
        self.set_interval(1.0, self._tick)
        self._show_summary()

    # -- the RowSource the table reads -------------------------------------------------

    @property
    def total(self) -> int | None:
        return self.window.total

    def row(self, index: int) -> TaskInfo | None:
        return self.window.row(index)

    def is_selected(self, task: uuid.UUID) -> bool:
        return task in self.selected

    def now(self) -> datetime:
        return self.mitosis.clock()

    def _tick(self) -> None:
        if self.window.total:
            self.table.refresh()  # ages and running durations move on

    # -- the query -----------------------------------------------------------------------

    def query_for(self, chunk: int) -> tuple[TaskQuery, bool]:
        """The query that reads ``chunk``, and whether it reads it in reverse order."""
        sort, descending = self.sort
        fields = dict(self.filter_fields)
        if "states" not in fields:
            fields["states"] = list(QUICK_FILTERS[self.quick][1])
        page = self.window.page_request(chunk)
        reverse = page.pop("reverse")
        query = TaskQuery(
            group=self.group or None,
            sort=sort,
            order=SortOrder.DESC if descending != reverse else SortOrder.ASC,
            **fields,
            **page,
        )
        return query, reverse

    def _requery(self) -> None:
        """The filter, sort or group changed: start from the top."""
        self.window.reset()
        table = self.table
        table.sort = self.sort
        table.scroll_to(y=0, animate=False, immediate=True, force=True)
        table.cursor_row = 0
        table.empty_text = self._empty_text()
        table.rows_changed()
        self._show_summary()
        self._fetcher = None
        self._fetch()

    def _empty_text(self) -> str:
        if self.filter_fields or self.quick:
            return "No task matches the filter."
        return "No tasks yet. Press n to submit one."

    # -- loading -------------------------------------------------------------------------

    def load(self) -> None:
        """Ctrl+R, the backstop and log-in: read the visible rows (and total) again."""
        self.window.mark_stale()
        self._fetch()

    def clear(self) -> None:
        super().clear()
        self.selected.clear()
        self.window.reset()
        self.table.rows_changed()
        self._show_summary()

    def on_task_table_need_rows(self, message: TaskTable.NeedRows) -> None:
        message.stop()
        self._visible = (message.first, message.last)
        self._fetch()

    def _fetch(self) -> None:
        if self.mitosis.identity is None or self._fetcher is not None:
            return
        self._fetcher = self.fetch_rows()

    @api_work(group="tasks-rows")
    async def fetch_rows(self) -> None:
        """Read what the viewport lacks, a chunk at a time, until nothing is missing."""
        me = get_current_worker()
        try:
            while self.mitosis.identity is not None:
                wanted = self.window.wanted(*self._visible)
                if not wanted:
                    break
                generation, number = self.window.generation, wanted[0]
                query, reverse = self.query_for(number)
                anchor = self._anchor()
                page = await self.mitosis.call(lambda c, q=query: c.query_tasks(q))
                if self.window.store(number, page, generation, reverse):
                    self._stored(anchor)
        finally:
            if self._fetcher is me:
                self._fetcher = None

    def _anchor(self) -> tuple[uuid.UUID, int] | None:
        task = self.window.row(self.table.cursor_row)
        return (task.uuid, self.table.cursor_row) if task is not None else None

    def _stored(self, anchor: tuple[uuid.UUID, int] | None) -> None:
        table = self.table
        table.empty_text = self._empty_text()
        table.rows_changed()
        if self._goto is not None:
            index = self.window.locate(self._goto)
            if index is not None:
                table.move_cursor(index)
                self._goto = None
        elif anchor is not None and not (anchor[1] == 0 and table.scroll_y == 0):
            index = self.window.locate(anchor[0])
            if index is not None and index != anchor[1]:
                table.shift(index - anchor[1])
        self._show_summary()

    # -- live ----------------------------------------------------------------------------

    def on_live_stream_events(self, message: LiveStream.Events) -> None:
        relevant = False
        for event in message.events:
            if self.group and self.group not in event.groups:
                continue
            relevant = True
            try:
                index = self.window.patch(uuid.UUID(event.object_id), event.payload)
            except ValueError:  # not a task this client understands: the re-read covers it
                continue
            if index is not None:
                self.table.refresh_lines(index + 1)
        if relevant:
            self._schedule_refetch()

    def on_live_stream_resync(self, _message: LiveStream.Resync) -> None:
        self.load()

    def _schedule_refetch(self) -> None:
        if self._refetch_timer is not None:
            return
        wait = max(0.05, REFETCH_EVERY - (time.monotonic() - self._last_refetch))
        self._refetch_timer = self.set_timer(wait, self._refetch)

    def _refetch(self) -> None:
        self._refetch_timer = None
        self._last_refetch = time.monotonic()
        self.load()

    # -- identity and groups -------------------------------------------------------------

    def _identity_changed(self, me) -> None:
        select = self.query_one("#tasks-group", Select)
        groups = sorted(m.group for m in me.groups) if me is not None else []
        with select.prevent(Select.Changed):
            select.set_options([("all groups", ALL_GROUPS), *((g, g) for g in groups)])
            select.value = self.group if self.group in groups else ALL_GROUPS
        if self.group not in groups:
            self.group = ALL_GROUPS

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id != "tasks-group":
            return
        event.stop()
        value = event.value if isinstance(event.value, str) else ALL_GROUPS
        if value != self.group:
            self.group = value
            self.mitosis.group_context = self._group_context()
            self._requery()
            self.table.focus()

    def _group_context(self) -> str:
        me = self.mitosis.identity
        if not self.group or me is None:
            return ""
        role = next((m.role for m in me.groups if m.group == self.group), None)
        return f"{self.group}:{role or '-'}"

    def action_choose_group(self) -> None:
        select = self.query_one("#tasks-group", Select)
        select.focus()
        select.action_show_overlay()

    # -- filters, sort, selection --------------------------------------------------------

    def _filter_line(self, shown: bool) -> None:
        self.query_one("#tasks-filter-row").set_class(shown, "-open")

    def action_filter(self) -> None:
        field = self.query_one("#tasks-filter", Input)
        self._filter_line(True)
        field.value = self.filter_text
        field.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "tasks-filter":
            return
        event.stop()
        try:
            fields = parse_filter(event.value)
        except FilterError as exc:
            self.notify(str(exc), title="Filter", severity="error", markup=False)
            return
        self.filter_text, self.filter_fields = event.value.strip(), fields
        self._filter_line(bool(self.filter_text))
        self.table.focus()
        self._requery()

    def on_key(self, event) -> None:
        field = self.query_one("#tasks-filter", Input)
        if event.key == "escape" and field.has_focus:
            event.stop()
            self._filter_line(bool(self.filter_text))
            field.value = self.filter_text
            self.table.focus()

    def action_quick_filter(self, step: int) -> None:
        self.quick = (self.quick + step) % len(QUICK_FILTERS)
        self.query_one(StateChips).current = self.quick
        self._requery()

    def on_state_chips_picked(self, message: StateChips.Picked) -> None:
        self.quick = message.index
        self._requery()

    def on_task_table_header_clicked(self, message: TaskTable.HeaderClicked) -> None:
        """A click on the sorted column reverses the sort; on another, sorts by that one."""
        if message.column.sort == self.sort[0]:
            self.action_reverse_sort()
        else:
            self._sort_by(message.column)

    def action_next_sort(self) -> None:
        """Sort by the next sortable column to the right of the sorted one (of those on
        screen, wrapping round)."""
        shown = [column for column, _ in self.table.columns() if column.sort is not None]
        current = next((n for n, c in enumerate(shown) if c.sort == self.sort[0]), -1)
        self._sort_by(shown[(current + 1) % len(shown)])

    def action_reverse_sort(self) -> None:
        sort, descending = self.sort
        self.sort = (sort, not descending)
        self._requery()

    def _sort_by(self, column: Column) -> None:
        assert column.sort is not None
        self.sort = (column.sort, column.descending)
        self._requery()

    def action_toggle_select(self) -> None:
        task = self.focused_task()
        if task is None:
            return
        self.selected.symmetric_difference_update({task.uuid})
        self.table.refresh_lines(self.table.cursor_row + 1)
        self.table.action_move(1)
        self._show_summary()

    def action_clear_selection(self) -> None:
        if not self.selected:
            raise SkipAction()  # Esc goes back to the previous pane
        self.selected.clear()
        self.table.refresh()
        self._show_summary()

    def _show_summary(self) -> None:
        total = self.window.total
        text = Text()
        count = "counting…" if total is None else f"{total:,} task{'' if total == 1 else 's'}"
        text.append(count, style="bold")
        if self.selected:
            text.append(f"  │  {len(self.selected)} selected", style="bold")
        sort, descending = self.sort
        text.append(f"  │  sort {SORTABLE[sort].key} {'▼' if descending else '▲'}")
        if self.filter_text:
            text.append(f"  │  /{self.filter_text}")
        self.query_one("#tasks-summary", Static).update(text)

    # -- task actions --------------------------------------------------------------------

    def focused_task(self) -> TaskInfo | None:
        return self.window.row(self.table.cursor_row)

    def target_uuids(self) -> list[uuid.UUID]:
        if self.selected:
            return sorted(self.selected)
        return super().target_uuids()

    def tasks_changed(self, new: uuid.UUID | None = None) -> None:
        if new is not None:
            self._goto = new
        self.selected.clear()
        self._show_summary()
        self.load()

    def action_details(self) -> None:
        task = self.focused_task()
        if task is not None:
            self.app.push_screen(TaskDetailsScreen(task.uuid))

    def action_new_task(self) -> None:
        me = self.mitosis.identity
        if me is None:
            return
        writable = sorted(m.group for m in me.groups if m.role.allows(Role.WRITE))
        form = SubmitForm(writable, self.group or me.username)
        self.app.push_screen(form, self._submit)

    def _submit(self, spec) -> None:
        if spec is not None:
            self.submit(spec)

    @api_work(group="task-submit")
    async def submit(self, spec) -> None:
        reply = await self.mitosis.call(lambda c: c.submit_task(spec))
        self.notify(f"Submitted {reply.group}#{reply.seq}: {reply.uuid}", markup=False)
        if reply.warning:
            self.notify(reply.warning, severity="warning", markup=False)
        self._goto = reply.uuid
        if self.group and reply.group != self.group:
            self.notify(f"{short_id(reply.uuid)} is in {reply.group}, not shown here.")
        self.load()

    def focus_target(self) -> Widget:
        return self.table
