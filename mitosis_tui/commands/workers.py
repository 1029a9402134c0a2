"""workers query|get|update-tags|update-labels|update-roles|remove-roles|drain|resume|cancel|
cancel-many, and ``admin workers cancel`` (registered by the admin family).

``cancel`` is the established client's name for shutting a worker down: gracefully (finish
running tasks, then exit) or with ``--force`` (kill them; they are requeued).
"""

from __future__ import annotations

from argparse import Namespace
from datetime import UTC, datetime

from mitosis_sdk.schemas import Grant, Role, WorkerFilter, WorkerInfo, WorkerQuery, WorkerState
from mitosis_sdk.units import format_duration
from mitosis_tui.commands.parsing import build, parse_uuid, split_list, subcommands
from mitosis_tui.commands.session import CommandSession, UsageError


def _heartbeat_age(worker: WorkerInfo) -> str:
    return format_duration((datetime.now(UTC) - worker.last_heartbeat).total_seconds()) + " ago"


def _state(worker: WorkerInfo) -> str:
    return f"{worker.state} ({worker.shutdown} shutdown)" if worker.shutdown else worker.state


WORKER_COLUMNS = [
    ("UUID", lambda w: w.uuid),
    ("STATE", _state),
    ("BUSY", lambda w: f"{w.slots_in_use}/{w.slots}"),
    ("TAGS", lambda w: w.tags),
    ("LABELS", lambda w: w.labels),
    ("GRANTS", lambda w: [f"{g.group}:{g.role}" for g in w.grants]),
    ("CREATOR", lambda w: w.creator),
    ("HEARTBEAT", _heartbeat_age),
]
VERBOSE_COLUMNS = [
    *WORKER_COLUMNS,
    ("HOST", lambda w: w.facts.hostname),
    ("VERSION", lambda w: w.version or None),
    ("CREATED", lambda w: w.created_at),
]
WORKER_FIELDS = [
    ("uuid", lambda w: w.uuid),
    ("state", _state),
    ("creator", lambda w: w.creator),
    ("tags", lambda w: w.tags),
    ("labels", lambda w: w.labels),
    ("grants", lambda w: [f"{g.group}:{g.role}" for g in w.grants]),
    ("slots", lambda w: w.slots),
    ("running", lambda w: w.running),
    ("heartbeat", _heartbeat_age),
    ("version", lambda w: w.version or None),
    (
        "host",
        lambda w: [
            f"{k}={v}"
            for k, v in ((f, getattr(w.facts, f)) for f in w.facts.__struct_fields__)
            if v is not None
        ],
    ),
    ("created", lambda w: w.created_at),
]


def parse_grant(text: str) -> Grant:
    """``GROUP:ROLE`` (role read, write or admin; ``GROUP`` alone means write)."""
    group, sep, role = text.partition(":")
    try:
        return build(Grant, group=group, role=Role(role.lower()) if sep else Role.WRITE)
    except ValueError:
        raise UsageError(f"unknown role {role!r} in {text!r}: use read, write or admin") from None


def worker_filter(args: Namespace) -> dict:
    try:
        states = [WorkerState(s) for s in split_list(args.states)]
    except ValueError as exc:
        raise UsageError(f"{exc}; states are {', '.join(WorkerState)}") from None
    return {
        "group": args.group,
        "tags": split_list(args.tags),
        "labels": split_list(args.labels),
        "states": states,
        "creators": split_list(args.creators),
    }


async def query(s: CommandSession, args: Namespace) -> None:
    q = build(WorkerQuery, **worker_filter(args), limit=args.limit, offset=args.offset)
    page = await s.call(lambda c: c.query_workers(q))
    if args.count:
        s.out.line(str(page.total))
        if s.out.as_json:
            s.out.json({"total": page.total})
        return
    s.out.table(page.workers, VERBOSE_COLUMNS if args.verbose else WORKER_COLUMNS, raw=page)
    s.out.info(f"{len(page.workers)} of {page.total} worker(s)")


async def get(s: CommandSession, args: Namespace) -> None:
    worker = parse_uuid(args.uuid)
    s.out.record(await s.call(lambda c: c.get_worker(worker)), WORKER_FIELDS)


async def update_tags(s: CommandSession, args: Namespace) -> None:
    worker, tags = parse_uuid(args.uuid), split_list(args.tags)
    info = await s.call(lambda c: c.update_worker_tags(worker, tags))
    s.out.done(f"tags of {info.uuid}: {', '.join(info.tags) or '(none: takes any task)'}", info)


async def update_labels(s: CommandSession, args: Namespace) -> None:
    worker, labels = parse_uuid(args.uuid), split_list(args.labels)
    info = await s.call(lambda c: c.update_worker_labels(worker, labels))
    s.out.done(f"labels of {info.uuid}: {', '.join(info.labels) or '(none)'}", info)


async def update_roles(s: CommandSession, args: Namespace) -> None:
    worker = parse_uuid(args.uuid)
    grants = [parse_grant(text) for text in args.grants]
    info = await s.call(lambda c: c.update_worker_grants(worker, grants))
    s.out.done(
        f"grants of {info.uuid}: {', '.join(f'{g.group}:{g.role}' for g in info.grants)}", info
    )


async def remove_roles(s: CommandSession, args: Namespace) -> None:
    worker = parse_uuid(args.uuid)
    info = await s.call(lambda c: c.remove_worker_grants(worker, args.groups))
    s.out.done(f"removed {len(args.groups)} grant(s) from {info.uuid}", info)


async def drain(s: CommandSession, args: Namespace) -> None:
    worker = parse_uuid(args.uuid)
    info = await s.call(lambda c: c.drain_worker(worker))
    s.out.done(f"{info.uuid} takes no new tasks; {len(info.running)} still running", info)


async def resume(s: CommandSession, args: Namespace) -> None:
    worker = parse_uuid(args.uuid)
    info = await s.call(lambda c: c.resume_worker(worker))
    s.out.done(f"{info.uuid} takes tasks again", info)


def _stopped(s: CommandSession, reply, force: bool) -> None:
    how = "forced shutdown (running tasks are killed and requeued)" if force else "shutdown"
    s.out.done(f"ordered {len(reply.workers)} worker(s) to {how}", reply)


async def cancel(s: CommandSession, args: Namespace) -> None:
    uuids = [parse_uuid(u) for u in args.uuids]
    _stopped(s, await s.call(lambda c: c.shutdown_workers(uuids, force=args.force)), args.force)


async def cancel_many(s: CommandSession, args: Namespace) -> None:
    chosen = build(WorkerFilter, **worker_filter(args))
    if chosen.empty:
        raise UsageError("cancel-many needs a filter (-g, -t, -l, -s, -c); nothing was stopped")
    reply = await s.call(lambda c: c.shutdown_workers(worker_filter=chosen, force=args.force))
    _stopped(s, reply, args.force)


async def admin_cancel(s: CommandSession, args: Namespace) -> None:
    worker = parse_uuid(args.uuid)
    info = await s.call(lambda c: c.admin_shutdown_worker(worker, force=args.force))
    s.out.done(f"ordered {info.uuid} to {'force ' if args.force else ''}shut down", info)


def _filter_options(p) -> None:
    p.add_argument("-g", "--group", help="workers granted to this group")
    p.add_argument("-t", "--tags", action="append", help="having all these tags")
    p.add_argument("-l", "--labels", action="append", help="having all these labels")
    p.add_argument("-s", "--states", action="append", help="online, draining, lost, stopped")
    p.add_argument("-c", "--creators", action="append", help="started by (comma-separated)")


def _force(p) -> None:
    p.add_argument("--force", action="store_true", help="kill running tasks (they requeue)")


def register(commands) -> None:
    workers = subcommands(commands.add_parser("workers", help="workers"), "workers_command")

    p = workers.add_parser("query", help="find workers you can see")
    _filter_options(p)
    p.add_argument("--limit", type=int, default=100, help="workers per page (≤ 1000)")
    p.add_argument("--offset", type=int, default=0, help="skip this many")
    p.add_argument("--count", action="store_true", help="print only how many match")
    p.add_argument("-v", "--verbose", action="store_true", help="more columns")
    p.set_defaults(handler=query)

    p = workers.add_parser("get", help="show a worker")
    p.add_argument("uuid")
    p.set_defaults(handler=get)

    p = workers.add_parser("update-tags", help="replace a worker's tags (none: any task)")
    p.add_argument("uuid")
    p.add_argument("tags", nargs="*", metavar="TAG")
    p.set_defaults(handler=update_tags)

    p = workers.add_parser("update-labels", help="replace a worker's labels")
    p.add_argument("uuid")
    p.add_argument("labels", nargs="*", metavar="LABEL")
    p.set_defaults(handler=update_labels)

    p = workers.add_parser("update-roles", help="grant groups: GROUP:ROLE …")
    p.add_argument("uuid")
    p.add_argument("grants", nargs="+", metavar="GROUP:ROLE")
    p.set_defaults(handler=update_roles)

    p = workers.add_parser("remove-roles", help="take grants away: GROUP …")
    p.add_argument("uuid")
    p.add_argument("groups", nargs="+", metavar="GROUP")
    p.set_defaults(handler=remove_roles)

    p = workers.add_parser("drain", help="finish running tasks, take no new ones")
    p.add_argument("uuid")
    p.set_defaults(handler=drain)

    p = workers.add_parser("resume", help="take tasks again after a drain")
    p.add_argument("uuid")
    p.set_defaults(handler=resume)

    p = workers.add_parser("cancel", help="shut workers down (gracefully, or --force)")
    p.add_argument("uuids", nargs="+", metavar="UUID")
    _force(p)
    p.set_defaults(handler=cancel)

    p = workers.add_parser("cancel-many", help="shut down every worker matching a filter")
    _filter_options(p)
    _force(p)
    p.set_defaults(handler=cancel_many)


def register_admin(admin) -> None:
    """``admin workers cancel UUID [--force]``: any worker, for Mitosis admins."""
    workers = subcommands(admin.add_parser("workers", help="any worker"), "admin_workers_command")
    p = workers.add_parser("cancel", help="shut a worker down (gracefully, or --force)")
    p.add_argument("uuid")
    _force(p)
    p.set_defaults(handler=admin_cancel)
