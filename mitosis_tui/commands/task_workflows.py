"""tasks rerun|explain: a copy of a task's spec with edits (T11) and "why is it pending?" (T12).

``tasks rerun UUID [options] [-- CMD ARGS…]`` prints the new task's UUID; ``tasks explain
UUID`` prints one row per worker the task's group may use with the rules that block it, and
the one-line summary (Slurm-style reason code) on stderr.
"""

from __future__ import annotations

from argparse import Namespace

from mitosis_sdk.schemas import TaskChange, TaskRerun
from mitosis_tui.commands.parsing import build, parse_uuid, split_list
from mitosis_tui.commands.session import CommandSession
from mitosis_tui.commands.task_options import spec_fields, spec_options

EXPLAIN_COLUMNS = [
    ("WORKER", lambda r: r.worker),
    ("STATE", lambda r: r.state),
    ("BLOCKED BY", lambda r: ", ".join(r.blocked_by) or "-"),
    ("DETAIL", lambda r: r.detail),
]


async def rerun(s: CommandSession, args: Namespace) -> None:
    task = parse_uuid(args.uuid)
    fields = spec_fields(args)
    request = TaskRerun(
        change=build(TaskChange, **fields) if fields else None,
        labels=split_list(args.labels) if args.labels is not None else None,
        group=args.group,
    )
    new = await s.call(lambda c: c.rerun_task(task, request))
    if new.warning:
        s.out.info(f"warning: {new.warning}")
    s.out.line(str(new.uuid))
    s.out.done(f"submitted task {new.uuid} ({new.group} #{new.seq}), a re-run of {task}", new)


async def explain(s: CommandSession, args: Namespace) -> None:
    task = parse_uuid(args.uuid)
    reply = await s.call(lambda c: c.explain_task(task))
    s.out.table(reply.workers, EXPLAIN_COLUMNS, raw=reply)
    s.out.info(f"{reply.state}: {reply.summary}")


def register(tasks) -> None:
    p = tasks.add_parser("rerun", help="submit a copy of a task: [options] [-- CMD ARGS…]")
    p.add_argument("uuid")
    p.add_argument("-g", "--group", help="run the copy in this group")
    p.add_argument("-l", "--labels", action="append", help="replace the labels")
    spec_options(p, submit=False)
    p.set_defaults(handler=rerun)

    p = tasks.add_parser("explain", help="why a queued task is not running, worker by worker")
    p.add_argument("uuid")
    p.set_defaults(handler=explain)
