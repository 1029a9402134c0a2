"""tasks submit|submit-many|get|query|cancel|cancel-many|change|update-labels|wait|logs.

``tasks submit [options] -- CMD ARGS…`` runs CMD without a shell (``-- sh -c '…'`` for one).
``tasks wait`` exits 0 when every task completed and 1 otherwise (FEATURES C2, E3); the live
event stream wakes it, a slow re-check (``--interval``) backs the stream up. ``tasks logs``
prints the kept live lines, then with ``-f`` new ones until the task ends, then the archived
``std-log`` when no live line was kept (commands/live.py).
"""

from __future__ import annotations

import asyncio
import json
import sys
from argparse import Namespace
from pathlib import Path

import msgspec

from mitosis_sdk import errors
from mitosis_sdk.schemas import (
    Dependency,
    Resource,
    SortOrder,
    TaskChange,
    TaskFilter,
    TaskInfo,
    TaskQuery,
    TaskSort,
    TaskSpec,
    TaskState,
    parse_array,
)
from mitosis_sdk.units import format_duration
from mitosis_tui.commands import live, task_workflows
from mitosis_tui.commands.parsing import build, parse_uuid, split_list
from mitosis_tui.commands.session import CommandSession, UsageError
from mitosis_tui.commands.task_options import (
    CommandLineParser,
    add_filter_options,
    duration,
    spec_fields,
    spec_options,
    submit_spec,
    task_filter,
    workflow_options,
)

STATE_SYMBOLS = {
    "pending": "…",
    "ready": "○",
    "running": "▶",
    "completed": "✔",
    "failed": "✘",
    "cancelled": "⊘",
}


def _command(task: TaskInfo, width: int = 48) -> str:
    text = " ".join(task.command)
    return text if len(text) <= width else text[: width - 1] + "…"


def _state(task: TaskInfo) -> str:
    text = f"{STATE_SYMBOLS.get(task.state, '')} {task.state}"
    if task.phase and task.state == TaskState.RUNNING:
        text += f" ({task.phase})"
    if task.cancel_pending:
        text += " (killing)"
    return text


def _exit(task: TaskInfo) -> str | None:
    if task.signal is not None:
        return f"signal {task.signal}"
    return None if task.exit_code is None else str(task.exit_code)


TASK_COLUMNS = [
    ("UUID", lambda t: t.uuid),
    ("GROUP", lambda t: f"{t.group}#{t.seq}"),
    ("STATE", _state),
    ("PRIO", lambda t: t.priority),
    ("COMMAND", _command),
    ("TAGS", lambda t: t.tags),
    ("LABELS", lambda t: t.labels),
    ("CREATED", lambda t: t.created_at),
    ("EXIT", _exit),
]
VERBOSE_COLUMNS = [
    *TASK_COLUMNS[:3],
    ("CREATOR", lambda t: t.creator),
    ("WORKER", lambda t: t.worker),
    ("ATTEMPT", lambda t: f"{t.attempt}/{t.max_attempts}"),
    ("REASON", lambda t: t.reason),
    *TASK_COLUMNS[3:],
    ("FINISHED", lambda t: t.finished_at),
]


def _attempt(a) -> str:
    ended = f" → {a.state}" + (f" ({a.reason})" if a.reason else "")
    return f"#{a.attempt} on {a.worker} at {a.started_at:%Y-%m-%d %H:%M:%S}{ended}"


def _link_text(dependency: Dependency) -> str:
    return f"{dependency.condition}:{dependency.task}"


def _dependents_text(task: TaskInfo) -> list[str]:
    shown = [_link_text(d) for d in task.dependents or []]
    return [*shown, f"+{task.dependents_unlisted} more"] if task.dependents_unlisted else shown


TASK_FIELDS = [
    ("uuid", lambda t: t.uuid),
    ("group", lambda t: f"{t.group} (task #{t.seq})"),
    ("creator", lambda t: t.creator),
    ("state", _state),
    ("reason", lambda t: t.reason),
    ("message", lambda t: t.message),
    ("command", lambda t: " ".join(t.command)),
    ("tags", lambda t: t.tags),
    ("labels", lambda t: t.labels),
    ("priority", lambda t: t.priority),
    ("timeout", lambda t: format_duration(t.timeout)),
    ("terminal", lambda t: t.terminal_output),
    ("env", lambda t: [f"{k}={v}" for k, v in (t.env or {}).items()]),
    ("resources", lambda t: [_resource_text(r) for r in t.resources]),
    ("worker", lambda t: t.worker),
    ("attempt", lambda t: f"{t.attempt} of at most {t.max_attempts}"),
    ("exit", _exit),
    ("created", lambda t: t.created_at),
    ("started", lambda t: t.started_at),
    ("finished", lambda t: t.finished_at),
    ("cancelled by", lambda t: t.cancelled_by),
    ("attempts", lambda t: "; ".join(_attempt(a) for a in t.attempts or []) or None),
    ("depends on", lambda t: [_link_text(d) for d in t.depends_on]),
    ("dependents", _dependents_text),
    ("retries", lambda t: t.retries),
    ("array", lambda t: f"{t.array_id} [{t.array_index}]" if t.array_id else None),
    ("upstream", lambda t: t.upstream),
    ("downstream", lambda t: t.downstream),
    ("downstream error", lambda t: t.downstream_error),
    ("rerun of", lambda t: t.rerun_of),
]


def _resource_text(resource: Resource) -> str:
    if resource.attachment is not None:
        return f"attachment={resource.attachment}:{resource.path}"
    return f"artifact={resource.artifact}:{resource.type}:{resource.path}"


async def submit(s: CommandSession, args: Namespace) -> None:
    if not args.command:
        raise UsageError("give the command after `--`: tasks submit [options] -- CMD ARGS…")
    spec = submit_spec(args)
    if args.array is not None:
        try:
            parse_array(args.array)
        except ValueError as exc:
            raise UsageError(f"--{exc}") from None
        array = await s.call(lambda c: c.submit_array(spec, args.array))
        if array.warning:
            s.out.info(f"warning: {array.warning}")
        s.out.line(str(array.array_id))
        s.out.done(f"submitted array {array.array_id}: {array.count} task(s)", array)
        return
    task = await s.call(lambda c: c.submit_task(spec))
    if task.warning:
        s.out.info(f"warning: {task.warning}")
    s.out.line(str(task.uuid))
    s.out.done(f"submitted task {task.uuid} ({task.group} #{task.seq})", task)


def _read_specs(path: str) -> list[TaskSpec]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        data = json.loads(text)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not JSON: {exc}") from None
    if isinstance(data, dict):
        data = data.get("tasks", [data]) if "command" not in data else [data]
    try:
        return msgspec.convert(data, list[TaskSpec])
    except msgspec.ValidationError as exc:
        raise UsageError(f"{path}: {exc}") from None


async def submit_many(s: CommandSession, args: Namespace) -> None:
    specs = _read_specs(args.file)
    if not specs:
        raise UsageError(f"{args.file} holds no task specs")
    reply = await s.call(lambda c: c.submit_tasks(specs, all_or_nothing=args.all_or_nothing))
    rows = list(enumerate(reply.results))
    s.out.table(
        rows,
        [
            ("#", lambda r: r[0]),
            ("UUID", lambda r: r[1].task.uuid if r[1].task else None),
            ("GROUP", lambda r: f"{r[1].task.group}#{r[1].task.seq}" if r[1].task else None),
            ("ERROR", lambda r: r[1].error.message if r[1].error else None),
        ],
        raw=reply,
    )
    if reply.failed:
        first = next(item.error for item in reply.results if item.error)
        raise errors.error_from_body(
            errors.STATUS_OF_CODE[first.error],
            msgspec.json.encode(
                errors.ErrorBody(
                    error=first.error,
                    message=f"{reply.failed} of {len(specs)} specs were refused; "
                    f"the first: {first.message}",
                )
            ),
        )
    s.out.info(f"submitted {reply.submitted} task(s)")


async def get(s: CommandSession, args: Namespace) -> None:
    task = parse_uuid(args.uuid)
    s.out.record(await s.call(lambda c: c.get_task(task)), TASK_FIELDS)


async def query(s: CommandSession, args: Namespace) -> None:
    q = build(
        TaskQuery,
        **task_filter(args),
        sort=TaskSort(args.sort),
        order=SortOrder.ASC if args.asc else SortOrder.DESC,
        limit=args.limit,
        offset=args.offset,
        cursor=args.cursor,
        verbose=args.verbose,
    )
    page = await s.call(lambda c: c.query_tasks(q))
    if args.count:
        s.out.line(str(page.total))
        if s.out.as_json:
            s.out.json({"total": page.total})
        return
    s.out.table(page.tasks, VERBOSE_COLUMNS if args.verbose else TASK_COLUMNS, raw=page)
    shown = f"{len(page.tasks)} of {page.total} task(s)"
    more = f"; next page: --cursor {page.next_cursor}" if page.next_cursor else ""
    s.out.info(shown + more)


def _cancel_report(s: CommandSession, reply) -> None:
    for ref in reply.unchanged:
        s.out.info(f"{ref.uuid} is already {ref.state}; left as it is")
    s.out.done(f"cancelled {len(reply.cancelled)} task(s)", reply)


async def cancel(s: CommandSession, args: Namespace) -> None:
    uuids = [parse_uuid(u) for u in args.uuids]
    _cancel_report(s, await s.call(lambda c: c.cancel_tasks(uuids)))


async def cancel_many(s: CommandSession, args: Namespace) -> None:
    chosen = build(TaskFilter, **task_filter(args))
    if chosen.empty:
        raise UsageError("cancel-many needs a filter (-g, -s, -t, -l, -c …); nothing was cancelled")
    _cancel_report(s, await s.call(lambda c: c.cancel_tasks(task_filter=chosen)))


async def change(s: CommandSession, args: Namespace) -> None:
    task = parse_uuid(args.uuid)
    fields = spec_fields(args)
    if not fields:
        raise UsageError("nothing to change: give -t, -e, --timeout, -p, -r, --terminal or -- CMD")
    edit = build(TaskChange, **fields)
    info = await s.call(lambda c: c.change_task(task, edit))
    s.out.done(f"changed task {info.uuid}", info)


async def update_labels(s: CommandSession, args: Namespace) -> None:
    task = parse_uuid(args.uuid)
    labels = split_list(args.labels)
    info = await s.call(lambda c: c.update_task_labels(task, labels))
    s.out.done(f"labels of {info.uuid}: {', '.join(info.labels) or '(none)'}", info)


class TasksNotCompleted(errors.MitosisError):
    """``tasks wait`` status 1: a task failed, was cancelled, or the wait timed out."""


async def wait(s: CommandSession, args: Namespace) -> None:
    uuids = [parse_uuid(u) for u in args.uuids]
    limit = None if args.timeout is None else duration(args.timeout, "--timeout")
    interval = duration(args.interval, "--interval")
    try:
        async with asyncio.timeout(limit):
            done = await s.call(lambda c: c.wait_tasks(uuids, poll=interval))
    except TimeoutError:
        raise TasksNotCompleted(f"gave up after {args.timeout}: not every task has ended") from None
    s.out.table(done, TASK_COLUMNS)
    failed = [t for t in done if t.state != TaskState.COMPLETED]
    if failed:
        raise TasksNotCompleted(f"{len(failed)} of {len(done)} task(s) did not complete")


def register(commands) -> None:
    tasks = commands.add_parser("tasks", help="tasks").add_subparsers(
        dest="tasks_command", metavar="SUBCOMMAND", parser_class=CommandLineParser
    )
    tasks.required = True

    p = tasks.add_parser("submit", help="submit a task: [options] -- CMD ARGS…")
    p.add_argument("-g", "--group", help="target group (default: your personal group)")
    p.add_argument("-l", "--labels", action="append", help="labels (comma-separated)")
    spec_options(p, submit=True)
    workflow_options(p)
    p.set_defaults(handler=submit)

    p = tasks.add_parser("submit-many", help="submit task specs from a JSON file")
    p.add_argument("-f", "--file", required=True, help="JSON list of specs ('-': stdin)")
    p.add_argument(
        "--all-or-nothing", action="store_true", help="submit none if any spec is refused"
    )
    p.set_defaults(handler=submit_many)

    p = tasks.add_parser("get", help="show a task with its attempts")
    p.add_argument("uuid")
    p.set_defaults(handler=get)

    p = tasks.add_parser("query", help="find tasks (newest first)")
    add_filter_options(p)
    p.add_argument("--sort", choices=[s.value for s in TaskSort], default="created")
    p.add_argument("--asc", action="store_true", help="ascending: oldest (or lowest) first")
    p.add_argument("--limit", type=int, default=100, help="tasks per page (≤ 1000)")
    p.add_argument("--offset", type=int, default=0, help="skip this many")
    p.add_argument("--cursor", help="continue after a previous page")
    p.add_argument("--count", action="store_true", help="print only how many match")
    p.add_argument("-v", "--verbose", action="store_true", help="more columns (and env in JSON)")
    p.set_defaults(handler=query)

    p = tasks.add_parser("cancel", help="cancel tasks (pending, ready or running)")
    p.add_argument("uuids", nargs="+", metavar="UUID")
    p.set_defaults(handler=cancel)

    p = tasks.add_parser("cancel-many", help="cancel every task matching a filter")
    add_filter_options(p)
    p.set_defaults(handler=cancel_many)

    p = tasks.add_parser("change", help="change a queued task: [options] [-- CMD ARGS…]")
    p.add_argument("uuid")
    spec_options(p, submit=False)
    p.set_defaults(handler=change)

    p = tasks.add_parser("update-labels", help="replace a task's labels (none: remove all)")
    p.add_argument("uuid")
    p.add_argument("labels", nargs="*", metavar="LABEL")
    p.set_defaults(handler=update_labels)

    p = tasks.add_parser("wait", help="wait until tasks end; exit 1 unless all completed")
    p.add_argument("uuids", nargs="+", metavar="UUID")
    p.add_argument("--timeout", help="give up after this long (e.g. 30m)")
    p.add_argument(
        "--interval", default="5s", help="re-check this often besides the live stream (5s)"
    )
    p.set_defaults(handler=wait)

    p = tasks.add_parser("logs", help="a task's live output; -f follows it until the task ends")
    p.add_argument("uuid")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.add_argument("--stderr", action="store_true", help="stderr instead of stdout")
    p.set_defaults(handler=live.logs)

    task_workflows.register(tasks)
