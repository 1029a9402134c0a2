"""Submitting tasks (FEATURES T1, T2): one spec, a batch, or what arrays, re-runs and
downstream tasks derive (``workflow_submit``); every way a task enters goes through
:func:`submit_tasks`, except the plain single submit on PostgreSQL (``single_submit``).

Submit needs ``write`` in the target group (default: the caller's personal group). A batch is
decided spec by spec, or all-or-nothing; either way every accepted task is inserted in one
transaction. The work is shaped by what it costs, since a submission is the coordinator's
hottest write:

1. *check*: the groups and the caller's roles in them in one statement (plus one for any
   dependencies), every spec judged before anything is written;
2. *number*: each group's numbers reserved as one range (``dialects.reserve_numbers``; on
   PostgreSQL in its own one-statement transaction, so concurrent submissions to one group do
   not queue behind each other's commit — a submission that fails after this leaves a gap);
3. *insert*: the tasks, their tag, label and dependency rows as one bulk statement each
   (``dialects.bulk_insert``); what a spec contributes to its rows is computed once per spec,
   so an array of 10,000 encodes its spec once;
   A task with dependencies is inserted in the state its share-locked upstreams give it
   (T6: ``pending``, or already ``ready`` / ``failed``), so no settling pass follows;
4. the no-worker warning for a single submit (T12), and the events and worker wake-ups
   queued for after the commit, built from what was inserted.
"""

from __future__ import annotations

import functools
import shlex
import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

import msgspec
from sqlalchemy import and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from mitosis_sdk.schemas import Role, TaskReason, TaskSpec, TaskState, TaskSubmitted
from mitosis_server.db.dialects import bulk_insert, numbering, reserve_numbers
from mitosis_server.db.models import Group, Membership, Task, TaskLabel, TaskTag, utcnow
from mitosis_server.errors import DomainError
from mitosis_server.services import explain, publishing, workflows
from mitosis_server.services.auth import Principal
from mitosis_server.services.groups import check_role
from mitosis_server.services.wakeups import Wakeups

# What a spec gives every one of its rows, then what varies per row (``extra`` included).
SPEC_COLUMNS = (
    "state",
    "reason",
    "message",
    "finished_at",
    "priority",
    "command",
    "command_line",
    "tags",
    "labels",
    "spec",
    "timeout",
    "retries",
    "max_attempts",
    "attempt",
)
EXTRA_COLUMNS = ("array_id", "array_index", "array_limit", "upstream_id", "rerun_of_id")
ROW_COLUMNS = ("uuid", "group_id", "seq", "creator_id", "created_at")
TASK_COLUMNS = SPEC_COLUMNS + ROW_COLUMNS + EXTRA_COLUMNS
NO_EXTRA = (None,) * len(EXTRA_COLUMNS)
_encode = msgspec.json.encode


class _Created(NamedTuple):
    """A new task as an event describes it (the fields ``publishing.task_event`` reads)."""

    uuid: uuid.UUID
    state: str
    group: str
    phase: None = None
    attempt: int = 0
    exit_code: None = None
    reason: None = None


def _in_batch(index: int, error: DomainError) -> DomainError:
    details = {**(error.details or {}), "index": index}
    return DomainError(error.code, f"tasks[{index}]: {error.message}", details)


def spec_values(
    spec: TaskSpec, attempts: int, state: TaskState, message: str | None, now: datetime
) -> tuple:
    """``SPEC_COLUMNS`` for a spec's rows (JSON columns encoded)."""
    stored = {
        "env": spec.env,
        "resources": spec.resources,
        "terminal_output": spec.terminal_output,
        "depends_on": spec.depends_on,
        "retry_delay": spec.retry_delay,
    }
    failed = state == TaskState.FAILED
    return (
        state.value,
        TaskReason.DEPENDENCY_NEVER_SATISFIED.value if failed else None,
        message,
        now if failed else None,
        spec.priority,
        _encode(spec.command).decode(),
        shlex.join(spec.command),
        _encode(spec.tags).decode(),
        _encode(spec.labels).decode(),
        _encode(stored).decode(),
        spec.timeout_seconds,
        spec.retries,
        # Lost-worker requeues (T8) keep their own budget on top of the failure retries.
        attempts + spec.retries,
        0,
    )


@functools.cache
def _roles_statement():
    """Every named group with the caller's membership role (NULL: not a member)."""
    membership = and_(Membership.group_id == Group.id, Membership.user_id == bindparam("user_id"))
    return (
        select(Group.id, Group.name, Membership.role)
        .outerjoin(Membership, membership)
        .where(Group.name.in_(bindparam("names", expanding=True)))
    )


async def _writable_groups(
    executor: AsyncSession | AsyncConnection, principal: Principal, names: Iterable[str]
) -> dict[str, int | DomainError]:
    """Each group name → its id when the caller may submit there, else the 404/403."""
    names = sorted(set(names))
    rows = {
        r.name: r
        for r in await executor.execute(
            _roles_statement(), {"user_id": principal.user_id, "names": names}
        )
    }
    found: dict[str, int | DomainError] = {}
    for name in names:
        row = rows.get(name)
        role = None
        if row is not None:
            role = Role.ADMIN if principal.is_admin else (Role(row.role) if row.role else None)
        try:
            check_role(name, role, Role.WRITE)
        except DomainError as exc:
            found[name] = exc
        else:
            found[name] = row.id
    return found


async def submit_tasks(
    db: AsyncSession,
    principal: Principal,
    specs: list[TaskSpec],
    *,
    all_or_nothing: bool,
    max_attempts: int,
    wakeups: Wakeups | None = None,
    batch: bool = True,
    extra: list[dict] | None = None,
    warn: bool = False,
) -> list[TaskSubmitted | DomainError]:
    """Insert the acceptable specs; the answer per spec is the new task or its error.

    With ``all_or_nothing`` the first error is raised instead and nothing is inserted.
    ``extra`` (one dict per spec) sets workflow columns: array id/index/limit, upstream,
    rerun_of. A task with dependencies starts ``pending``, or ``ready`` / ``failed`` when its
    upstreams already decided it (T6).
    ``warn`` adds the T12 warning to the answers (single submissions).
    """
    results: list[TaskSubmitted | DomainError | None] = [None] * len(specs)
    accepted: dict[int, list[int]] = defaultdict(list)
    async with numbering(db) as executor:
        found = await workflows.check_dependencies(executor, principal, specs)
        groups = await _writable_groups(
            executor, principal, (spec.group or principal.username for spec in specs)
        )
        for index, spec in enumerate(specs):
            group = groups[spec.group or principal.username]
            error = group if isinstance(group, DomainError) else None
            if error is None and spec.depends_on:
                error = workflows.dependency_error(spec, found)
            if error is not None:
                error = _in_batch(index, error) if batch else error
                if all_or_nothing:
                    raise error
                results[index] = error
                continue
            accepted[group].append(index)
        if not accepted:
            return results
        first = {
            group_id: await reserve_numbers(executor, group_id, len(indexes))
            for group_id, indexes in accepted.items()
        }
    names = {group_id: name for name, group_id in groups.items() if isinstance(group_id, int)}
    seqs: dict[int, tuple[int, int]] = {}
    for group_id, indexes in accepted.items():
        for offset, index in enumerate(indexes):
            seqs[index] = (group_id, first[group_id] + offset)
    await _insert(db, principal, specs, seqs, max_attempts, extra, results, names, found)
    created = [r for r in results if isinstance(r, TaskSubmitted)]
    if warn and len(created) == 1:
        created[0].warning = await explain.submit_warning(db, created[0].uuid)
    _announce_after_commit(db, wakeups, created)
    return results


def _announce_after_commit(
    db: AsyncSession, wakeups: Wakeups | None, created: list[TaskSubmitted]
) -> None:
    """:func:`announce` once the transaction has committed."""
    if created:
        db.info.setdefault("after_commit", []).append(functools.partial(announce, wakeups, created))


async def announce(wakeups: Wakeups | None, created: list[TaskSubmitted]) -> None:
    """New tasks' events and the wake-ups of fetches parked on their groups, now: for
    tasks whose submission has committed."""
    if wakeups is not None:
        wakeups.notify({r.group for r in created}, set())
    events = [publishing.task_event(_Created(r.uuid, r.state.value, r.group)) for r in created]
    await publishing.publish(publishing.bus_of(wakeups), events, [])


async def _insert(
    db: AsyncSession,
    principal: Principal,
    specs: list[TaskSpec],
    seqs: dict[int, tuple[int, int]],
    max_attempts: int,
    extra: list[dict] | None,
    results: list,
    names: dict[int, str],
    found: dict,
) -> None:
    """Insert the accepted specs (``seqs``: index → group id and number), in submission order
    so ids keep FIFO among equals (S2), and fill their answers in ``results``."""
    now = utcnow()
    named = [found[d.task] for i in seqs for d in specs[i].depends_on]
    upstreams = await workflows.lock_upstreams(db, named) if named else {}
    per_spec: dict[int, tuple] = {}
    rows, uuids = [], {}
    for index in sorted(seqs):
        spec = specs[index]
        values = per_spec.get(id(spec))
        if values is None:
            state, message = workflows.initial_state(spec, found, upstreams)
            values = spec_values(spec, max_attempts, state, message, now)
            per_spec[id(spec)] = values
        task_uuid = uuid.uuid4()
        uuids[task_uuid] = index
        more = NO_EXTRA if extra is None else tuple(extra[index].get(c) for c in EXTRA_COLUMNS)
        group_id, seq = seqs[index]
        rows.append((*values, task_uuid, group_id, seq, principal.user_id, now, *more))
        results[index] = TaskSubmitted(
            uuid=task_uuid, group=names[group_id], seq=seq, state=TaskState(values[0])
        )
    table = Task.__table__
    ids = {
        uuids[task_uuid]: task_id
        for task_id, task_uuid in await bulk_insert(db, table, TASK_COLUMNS, rows, ("id", "uuid"))
    }
    tags = [(ids[i], tag) for i in sorted(ids) for tag in specs[i].tags]
    labels = [(ids[i], label) for i in sorted(ids) for label in specs[i].labels]
    await bulk_insert(db, TaskTag.__table__, ("task_id", "tag"), tags)
    await bulk_insert(db, TaskLabel.__table__, ("task_id", "label"), labels)
    waiting = [(ids[i], specs[i]) for i in sorted(ids) if specs[i].depends_on]
    await workflows.add_dependencies(db, waiting, found)


async def submit_task(
    db: AsyncSession,
    principal: Principal,
    spec: TaskSpec,
    *,
    max_attempts: int,
    wakeups: Wakeups | None = None,
    extra: dict | None = None,
) -> TaskSubmitted:
    """One task, with the T12 warning when no live worker could take it."""
    (result,) = await submit_tasks(
        db,
        principal,
        [spec],
        all_or_nothing=True,
        max_attempts=max_attempts,
        wakeups=wakeups,
        batch=False,
        extra=None if extra is None else [extra],
        warn=True,
    )
    return result
