"""The Tasks table's columns: what each shows, how wide it is, and which go first when the
terminal is narrow.

Every column but COMMAND has a fixed width, so rows never jump as they load or change;
COMMAND takes what is left. When the width does not fit every column, the ones with the
highest ``drop`` number are left out first (at 80 columns: tags, labels, worker, phase);
``drop == 0`` columns always stay. State is a symbol *and* a word (colour is extra).

A column with a ``sort`` is one the coordinator can order by (``TaskSort``); the Tasks pane
sorts by it from the header or with ``s``/``S``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from mitosis_sdk.schemas import TaskInfo, TaskSort, TaskState
from mitosis_sdk.units import format_duration
from mitosis_tui.commands.tasks import STATE_SYMBOLS

__all__ = ["COLUMNS", "SORTABLE", "Column", "compact_age", "layout", "short_id", "state_text"]

GAP = 1  # cells between columns
COMMAND_EXTRA = 40  # spare cells COMMAND takes first
LIST_EXTRA = 14  # then TAGS and LABELS, each
MARK_WIDTH = 2  # the selection mark before the first column


def short_id(value: object) -> str:
    return str(value)[:8] if value is not None else ""


def compact_age(seconds: float) -> str:
    """At most 4 cells: ``9s``, ``12m``, ``3h``, ``41d``."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def state_text(task: TaskInfo) -> str:
    if task.cancel_pending:
        return f"{STATE_SYMBOLS[TaskState.CANCELLED]} killing"
    return f"{STATE_SYMBOLS.get(task.state, '?')} {task.state}"


def _duration(task: TaskInfo, now: datetime) -> str:
    if task.started_at is None:
        return ""
    end = task.finished_at or (now if task.state == TaskState.RUNNING else None)
    return format_duration((end - task.started_at).total_seconds()) if end else ""


def _phase(task: TaskInfo, _now: datetime) -> str:
    """Where a running attempt is; nothing once the task has ended (the state says it)."""
    return str(task.phase or "") if task.state == TaskState.RUNNING else ""


def _exit(task: TaskInfo, _now: datetime) -> str:
    if task.signal is not None:
        return f"s{task.signal}"
    return "" if task.exit_code is None else str(task.exit_code)


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    width: int
    drop: int
    cell: Callable[[TaskInfo, datetime], str]
    right: bool = False
    sort: TaskSort | None = None  # the coordinator sorts by this column
    descending: bool = True  # the direction a new sort by this column starts in
    styled: bool = False  # coloured by the task's state


def _age(task: TaskInfo, now: datetime) -> str:
    return compact_age((now - task.created_at).total_seconds())


# Sorts start where an operator looks first: newest, highest priority, running (then queued,
# then failed), longest, highest exit code, tasks with a worker (grouped by it); groups
# from A.
COLUMNS: tuple[Column, ...] = (
    Column("state", "STATE", 11, 0, lambda t, _: state_text(t), sort=TaskSort.STATE, styled=True),
    Column("uuid", "UUID", 8, 0, lambda t, _: short_id(t.uuid)),
    Column(
        "group",
        "GROUP",
        12,
        3,
        lambda t, _: f"{t.group}#{t.seq}",
        sort=TaskSort.GROUP,
        descending=False,
    ),
    Column("command", "COMMAND", 14, 0, lambda t, _: " ".join(t.command)),
    Column("tags", "TAGS", 10, 8, lambda t, _: ",".join(t.tags)),
    Column("labels", "LABELS", 10, 6, lambda t, _: ",".join(t.labels)),
    Column("priority", "PRIO", 5, 4, lambda t, _: str(t.priority), True, TaskSort.PRIORITY),
    Column(
        "worker",
        "WORKER",
        8,
        7,
        lambda t, _: short_id(t.worker),
        sort=TaskSort.WORKER,
    ),
    Column("phase", "PHASE", 9, 5, _phase),
    Column("age", "AGE", 4, 0, _age, True, TaskSort.CREATED),
    Column("duration", "DUR", 6, 2, _duration, True, TaskSort.DURATION),
    Column("exit", "EXIT", 4, 1, _exit, True, TaskSort.EXIT_CODE),
)
SORTABLE = {column.sort: column for column in COLUMNS if column.sort is not None}


def layout(width: int) -> list[tuple[Column, int]]:
    """The columns that fit in ``width`` cells, each with the width it gets: spare cells go
    to COMMAND (up to ``COMMAND_EXTRA``), then to TAGS and LABELS, then to COMMAND again."""
    shown = list(COLUMNS)
    while True:
        fixed = sum(c.width for c in shown) + GAP * (len(shown) - 1) + MARK_WIDTH
        if fixed <= width or all(c.drop == 0 for c in shown):
            break
        worst = max(shown, key=lambda c: c.drop)
        shown.remove(worst)
    spare = max(0, width - fixed)
    extra = {"command": min(spare, COMMAND_EXTRA)}
    spare -= extra["command"]
    lists = [c.key for c in shown if c.key in ("tags", "labels")]
    for key in lists:
        extra[key] = min(spare // len(lists), LIST_EXTRA)
    extra["command"] += spare - sum(extra.get(key, 0) for key in lists)
    return [(c, c.width + extra.get(c.key, 0)) for c in shown]
