"""``events [-g G…] [--json]``: the live feed of task and worker events, for scripts.

One line per event as it is committed (``--json``: the event as one JSON object, with the
cursor a script can store), only of groups the caller may read; runs until interrupted.
"""

from __future__ import annotations

import contextlib
from argparse import Namespace

from mitosis_tui.commands.parsing import split_list
from mitosis_tui.commands.session import CommandSession


def _text(event) -> str:
    payload = " ".join(f"{k}={v}" for k, v in event.payload.items() if v is not None)
    return f"{event.kind} {event.object_id} {','.join(event.groups)} {payload}".rstrip()


async def events(s: CommandSession, args: Namespace) -> None:
    groups = split_list(args.group)

    async def feed(client) -> None:
        async with contextlib.aclosing(client.events(groups=groups, cursor=args.cursor)) as items:
            async for event in items:
                if s.out.as_json:
                    s.out.json(event)
                else:
                    s.out.line(_text(event))

    await s.call(feed)


def register(commands) -> None:
    p = commands.add_parser("events", help="print task and worker events as they happen")
    p.add_argument("-g", "--group", action="append", help="only these groups (comma-separated)")
    p.add_argument("--cursor", help="resume after this cursor (default: from now)")
    p.set_defaults(handler=events)
