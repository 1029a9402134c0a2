"""Task details (Enter): spec, phases, attempts, result, artifacts, links, "why pending".

One screen per task, live: an event for the task re-reads it (with its artifacts, and for a
queued task the coordinator's explanation, T12). The links (the tasks it depends on, the task
that submitted it, the task it re-runs, the tasks it submitted, the tasks that depend on it)
are a list: Enter opens that task's details on top, Esc comes back (the coordinator lists
the first 100 dependents; the list says how many more there are). The task keys (logs,
cancel, re-run, labels, artifacts, copy) work here as in the Tasks pane.
"""

from __future__ import annotations

import uuid
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, cast

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Label, OptionList, Static
from textual.widgets.option_list import Option

from mitosis_sdk.schemas import ArtifactInfo, TaskExplain, TaskInfo, TaskPhase, TaskState
from mitosis_sdk.schemas.events import EventKind
from mitosis_sdk.units import format_duration, format_size
from mitosis_tui.live import LiveStream
from mitosis_tui.widgets.task_actions import TASK_BINDINGS, TaskActions
from mitosis_tui.widgets.task_columns import short_id, state_text
from mitosis_tui.workers import api_work

if TYPE_CHECKING:
    from mitosis_tui.app import MitosisApp


def _when(moment: datetime | None, tz: tzinfo | None, form: str = "%Y-%m-%d %H:%M:%S") -> str:
    """In the app clock's time zone (the local one; tests freeze it in UTC)."""
    return f"{moment.astimezone(tz):{form}}" if moment else "-"


def _fields(rows: list[tuple[str, object]]) -> Table:
    table = Table(box=None, show_header=False, padding=(0, 1, 0, 0), expand=True)
    table.add_column("field", style="bold", no_wrap=True, width=11)
    table.add_column("value", overflow="fold", ratio=1)
    for name, value in rows:
        if value in (None, "", []):
            continue
        table.add_row(name, value if isinstance(value, Text) else Text(str(value)))
    return table


def _section(title: str, body: RenderableType) -> Group:
    return Group(Text(title, style="bold underline"), body, Text(""))


def spec_section(task: TaskInfo, tz: tzinfo | None) -> Group:
    env = ", ".join(f"{k}={v}" for k, v in (task.env or {}).items())
    resources = ", ".join(
        f"attachment {r.attachment} → {r.path}"
        if r.attachment is not None
        else f"artifact {short_id(r.artifact)}:{r.type} → {r.path}"
        for r in task.resources
    )
    return _section(
        "Spec",
        _fields(
            [
                ("command", " ".join(task.command)),
                ("group", f"{task.group} (task #{task.seq})"),
                ("creator", task.creator),
                ("created", _when(task.created_at, tz)),
                ("tags", ", ".join(task.tags) or "none"),
                ("labels", ", ".join(task.labels) or "none"),
                ("priority", task.priority),
                ("timeout", format_duration(task.timeout)),
                ("terminal", "kept as std-log" if task.terminal_output else "not kept"),
                ("env", env),
                ("resources", resources),
                ("retries", task.retries or None),
                ("array", f"{task.array_id} [{task.array_index}]" if task.array_id else None),
            ]
        ),
    )


def phases_line(task: TaskInfo) -> Text:
    """``✔fetching ✔waiting ▶spawned ·exited …``: how far the current attempt got."""
    reached = task.phase.rank if task.phase else -1
    done = task.state.terminal  # nothing is in progress any more
    line = Text()
    for phase in TaskPhase:
        if line:
            line.append(" ")
        if phase.rank < reached or (done and phase.rank == reached):
            line.append(f"✔{phase}", style="green")
        elif phase.rank == reached:
            line.append(f"▶{phase}", style="bold yellow")
        else:
            line.append(f"·{phase}", style="dim")
    return line


def result_section(task: TaskInfo, tz: tzinfo | None) -> Group:
    duration = None
    if task.started_at and task.finished_at:
        duration = format_duration((task.finished_at - task.started_at).total_seconds())
    return _section(
        "Result",
        _fields(
            [
                ("state", state_text(task)),
                ("phase", phases_line(task) if task.phase is not None else None),
                ("exit code", task.exit_code),
                ("signal", task.signal),
                ("reason", task.reason),
                ("message", task.message),
                ("worker", task.worker),
                ("attempt", f"{task.attempt} of at most {task.max_attempts}"),
                ("started", _when(task.started_at, tz) if task.started_at else None),
                ("finished", _when(task.finished_at, tz) if task.finished_at else None),
                ("duration", duration),
                ("cancelled", f"by {task.cancelled_by}" if task.cancelled_by else None),
                ("downstream", task.downstream_error),
            ]
        ),
    )


def attempts_section(task: TaskInfo, tz: tzinfo | None) -> Group | None:
    if not task.attempts:
        return None
    table = Table(box=None, padding=(0, 2, 0, 0), header_style="bold")
    for title in ("#", "WORKER", "STARTED", "ENDED", "OUTCOME", "EXIT", "REASON"):
        table.add_column(title, no_wrap=title != "REASON")
    for a in task.attempts:
        exit_text = f"signal {a.signal}" if a.signal is not None else a.exit_code
        table.add_row(
            str(a.attempt),
            short_id(a.worker),
            _when(a.started_at, tz, "%H:%M:%S"),
            _when(a.ended_at, tz, "%H:%M:%S"),
            a.state,
            "" if exit_text is None else str(exit_text),
            str(a.reason or a.message or ""),
        )
    return _section("Attempts", table)


def artifacts_section(artifacts: list[ArtifactInfo], tz: tzinfo | None) -> Group:
    if not artifacts:
        return _section("Artifacts", Text("none", style="dim"))
    table = Table(box=None, padding=(0, 1, 0, 0), header_style="bold")
    for title in ("TYPE", "SIZE", "CREATED", "BY"):
        table.add_column(title, no_wrap=True)
    for artifact in artifacts:
        table.add_row(
            str(artifact.type),
            format_size(artifact.size),
            _when(artifact.created_at, tz),
            artifact.uploaded_by,
        )
    return _section("Artifacts  (a: download)", table)


def pending_section(explain: TaskExplain) -> Group:
    table = Table(box=None, padding=(0, 1, 0, 0), expand=True, header_style="bold")
    for title in ("WORKER", "STATE", "BLOCKED BY", "DETAIL"):
        table.add_column(title, no_wrap=title != "DETAIL")
    for row in explain.workers:
        blocked = ", ".join(row.blocked_by) or "-"
        table.add_row(short_id(row.worker), row.state, blocked, row.detail)
    summary = Text(explain.summary, style="bold")
    if not explain.workers:
        return _section("Why it is not running", summary)
    return _section("Why it is not running", Group(summary, table))


def links(task: TaskInfo) -> list[tuple[str, uuid.UUID]]:
    """(how it is linked, task) for every task this one is linked to, up then down. A task
    linked in several ways is one entry naming each (a downstream task waits on the task
    that submitted it, so each of the two lists the other twice over)."""
    found = [(f"depends on ({d.condition})", d.task) for d in task.depends_on]
    if task.upstream:
        found.append(("submitted by", task.upstream))
    if task.rerun_of:
        found.append(("re-run of", task.rerun_of))
    found += [("submitted", d) for d in task.downstream or []]
    found += [(f"dependent ({d.condition})", d.task) for d in task.dependents or []]
    ways: dict[uuid.UUID, list[str]] = {}
    for how, other in found:
        ways.setdefault(other, []).append(how)
    return [(", ".join(hows), other) for other, hows in ways.items()]


class TaskDetailsScreen(TaskActions, Screen[None]):
    BINDINGS = [
        Binding("escape,q", "close", "Back"),
        Binding("ctrl+r,f5", "reload", "Refresh", show=False, tooltip="Read the task again"),
        *TASK_BINDINGS,
    ]

    def __init__(self, task: uuid.UUID) -> None:
        super().__init__()
        self.task_id = task
        self.info: TaskInfo | None = None
        self.artifacts: list[ArtifactInfo] = []
        self.explain: TaskExplain | None = None

    @property
    def mitosis(self) -> MitosisApp:
        return cast("MitosisApp", self.app)

    def compose(self) -> ComposeResult:
        yield Static(f"Task {self.task_id}", id="details-header")
        with VerticalScroll(id="details-body"):
            yield Label("Linked tasks  (Enter opens, Tab moves here)", id="details-links-title")
            yield OptionList(id="details-links", compact=True)
            yield Static("Loading…", id="details-main")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.mitosis.live.subscribe(self, {EventKind.TASK_STATE, EventKind.TASK_PHASE})
        self.query_one("#details-body").focus()
        self.load()

    def on_unmount(self) -> None:
        self.mitosis.live.unsubscribe(self)

    def focused_task(self) -> TaskInfo | None:
        return self.info

    def tasks_changed(self, new: uuid.UUID | None = None) -> None:
        self.load()

    def on_live_stream_events(self, message: LiveStream.Events) -> None:
        if any(event.object_id == str(self.task_id) for event in message.events):
            self.load()

    def on_live_stream_resync(self, _message: LiveStream.Resync) -> None:
        self.load()

    def action_reload(self) -> None:
        self.load()

    @api_work(group="task-details")
    async def load(self) -> None:
        info = await self.mitosis.call(lambda c: c.get_task(self.task_id))
        artifacts = await self.mitosis.call(lambda c: c.list_artifacts(self.task_id))
        explain = None
        if info.state in (TaskState.PENDING, TaskState.READY):
            explain = await self.mitosis.call(lambda c: c.explain_task(self.task_id))
        self.info, self.artifacts, self.explain = info, artifacts, explain
        self.show()

    def show(self) -> None:
        info = self.info
        if info is None:
            return
        header = Text(f"Task {info.uuid}  ", style="bold")
        header.append(f"{info.group}#{info.seq}  ")
        header.append(state_text(info), style=_STATE_STYLES.get(info.state, ""))
        self.query_one("#details-header", Static).update(header)
        tz = self.mitosis.clock().tzinfo
        parts: list[RenderableType] = [result_section(info, tz)]
        if self.explain is not None:
            parts.append(pending_section(self.explain))
        parts.append(spec_section(info, tz))
        attempts = attempts_section(info, tz)
        if attempts is not None:
            parts.append(attempts)
        parts.append(artifacts_section(self.artifacts, tz))
        self.query_one("#details-main", Static).update(Group(*parts))
        linked = links(info)
        options = self.query_one("#details-links", OptionList)
        options.clear_options()
        options.add_options(
            Option(f"{how:<22} {short_id(task)}", id=str(task)) for how, task in linked
        )
        if info.dependents_unlisted:
            more = f"… and {info.dependents_unlisted} more dependents, not listed"
            options.add_option(Option(more, disabled=True))
        if linked:
            options.highlighted = 0
        options.display = bool(linked)
        self.query_one("#details-links-title").display = bool(linked)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id:
            self.app.push_screen(TaskDetailsScreen(uuid.UUID(event.option.id)))

    def action_close(self) -> None:
        self.dismiss(None)


_STATE_STYLES = {
    TaskState.RUNNING: "bold yellow",
    TaskState.COMPLETED: "green",
    TaskState.FAILED: "bold red",
    TaskState.CANCELLED: "magenta",
}
