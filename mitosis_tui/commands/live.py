"""Live output and events for scripts: ``tasks logs UUID [-f] [--stderr]`` and ``events``.

Data goes to stdout as it arrives (one line per output line or event; ``--json``: one JSON
object per line), diagnostics to stderr. ``tasks logs`` prints the live lines the coordinator
still keeps, then with ``-f`` new ones until the task ends; when the task has ended and no
live line was kept (it expired, or the worker could not ship), the archived ``std-log``
artifact is printed instead, if the task kept one (``--terminal``).
"""

from __future__ import annotations

import contextlib
import tarfile
import tempfile
from argparse import Namespace
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from mitosis_sdk import errors
from mitosis_tui.commands.parsing import parse_uuid
from mitosis_tui.commands.session import CommandSession

STD_LOG = "std-log"


async def logs(s: CommandSession, args: Namespace) -> None:
    task = parse_uuid(args.uuid)
    wanted = "stderr" if args.stderr else "stdout"
    shown = 0

    async def follow(client) -> None:
        nonlocal shown
        async with contextlib.aclosing(client.follow_logs(task, follow=args.follow)) as lines:
            async for line in lines:
                if line.stream != wanted:
                    continue
                shown += 1
                if s.out.as_json:
                    s.out.json(line)
                else:
                    s.out.line(line.text)

    await s.call(follow)
    if shown:
        return
    info = await s.call(lambda c: c.get_task(task))
    if info.state.terminal:
        await _archived(s, task, wanted)


async def _archived(s: CommandSession, task, wanted: str) -> None:
    """Print the archived stream from the task's std-log artifact, if there is one."""

    async def show(client) -> None:
        async with archived_log(client, task) as archive:
            if archive is None:
                s.out.info(f"no live lines are kept for task {task} and it has no {STD_LOG}")
                return
            s.out.info(f"(archived {STD_LOG} of task {task})")
            for text in archived_lines(archive, wanted):
                if s.out.as_json:
                    s.out.json({"task_id": str(task), "stream": wanted, "text": text})
                else:
                    s.out.line(text)

    await s.call(show)


@contextlib.asynccontextmanager
async def archived_log(client, task) -> AsyncIterator[Path | None]:
    """The task's ``std-log`` artifact, downloaded into a scratch directory that is removed
    afterwards; None when the task kept none (it ran without ``--terminal``)."""
    with tempfile.TemporaryDirectory(prefix="mitosis-logs-") as tmp:
        archive = Path(tmp) / "std-log.tar.gz"
        try:
            await client.download_artifact(task, STD_LOG, archive)
        except errors.NotFound:
            yield None
        else:
            yield archive


def archived_lines(archive: Path, stream: str) -> Iterator[str]:
    """The lines of one stream (``stdout`` or ``stderr``) of a std-log archive, read as they
    are consumed (an archived stream may be 100 MiB)."""
    with tarfile.open(archive) as tar:
        member = next(
            (m for m in tar.getmembers() if m.isfile() and m.name.endswith(f"{stream}.log")),
            None,
        )
        raw = tar.extractfile(member) if member is not None else None
        if raw is None:
            return
        for line in raw:
            yield line.decode(errors="replace").rstrip("\n")
