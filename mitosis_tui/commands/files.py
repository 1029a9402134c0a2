"""Pieces the files commands share: the default group, progress bars, many downloads at once.

``groups attachments …`` (:mod:`attachments`) and ``tasks artifacts …`` (:mod:`artifacts`)
join the ``groups`` and ``tasks`` families from here: :func:`register` runs last in
``FAMILIES`` and adds them to the parsers those families made. Bytes move straight between
this process and the presigned URLs; a transfer shows a progress bar on stderr when stderr is
a terminal, and nothing otherwise. A ``download-many`` that could not save every file exits
with status 1 after saving the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from argparse import Namespace
from collections.abc import Callable, Iterator
from pathlib import Path

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from mitosis_sdk.archives import ArchiveError, safe_extract
from mitosis_sdk.errors import MitosisError
from mitosis_sdk.units import format_size
from mitosis_tui.commands.parsing import subcommands
from mitosis_tui.commands.session import CommandSession, UsageError

CONCURRENCY = 4


class TransfersFailed(MitosisError):
    """Some files of a download-many could not be saved (exit status 1)."""


# --- shared pieces ---------------------------------------------------------------------------


async def default_group(s: CommandSession, args: Namespace) -> str:
    """``-g``, else the personal group (named like the user)."""
    if args.group:
        return args.group
    if s.username:
        return s.username
    return (await s.call(lambda c: c.whoami())).username


@contextlib.contextmanager
def transfer_progress(
    s: CommandSession, total: int, what: str
) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr for ``total`` bytes, when stderr is a terminal."""
    console = s.out.diagnostics
    if not console.is_terminal or s.out.as_json:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task(what, total=total)
        yield lambda advance: progress.advance(bar, advance)


def local_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise UsageError(f"{text}: no such file")
    return path


def destination(output: str | None, default_name: str) -> Path:
    """``-o`` (a directory: the default name inside it), else the default name here."""
    if output is None:
        return Path(default_name)
    path = Path(output)
    return path / default_name if path.is_dir() else path


def describe_failure(exc: Exception) -> str:
    if isinstance(exc, MitosisError):
        return exc.message
    if isinstance(exc, OSError):
        return f"{exc.strerror or type(exc).__name__}: {exc.filename or ''}".strip()
    return str(exc)


async def download_all(
    s: CommandSession, jobs: list[tuple[str, str, int, Path]], what: str
) -> tuple[list[dict], list[dict]]:
    """Download (name, url, size, target) jobs, ``CONCURRENCY`` at a time; one failure does
    not stop the others. Returns (saved, failed) records."""
    saved: list[dict] = []
    failed: list[dict] = []
    gate = asyncio.Semaphore(CONCURRENCY)
    with transfer_progress(s, sum(size for *_, size, _ in jobs), what) as progress:

        async def one(name: str, url: str, size: int, target: Path) -> None:
            async with gate:
                try:
                    await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
                    await s.client.download_url(url, target, size=size, progress=progress)
                except (MitosisError, OSError) as exc:
                    failed.append({"name": name, "error": describe_failure(exc)})
                else:
                    saved.append({"name": name, "path": str(target), "size": size})

        await asyncio.gather(*(one(*job) for job in jobs))
    return saved, failed


def report_many(s: CommandSession, saved: list[dict], failed: list[dict], folder: Path) -> None:
    total = sum(item["size"] for item in saved)
    for item in failed:
        s.out.error(f"{item['name']}: {item['error']}")
    s.out.done(
        f"saved {len(saved)} file(s), {format_size(total)}, in {folder}",
        {"saved": saved, "failed": failed},
    )
    if failed:
        raise TransfersFailed(f"{len(failed)} of {len(saved) + len(failed)} downloads failed")


def extract(archive: Path, into: Path, remove: bool = False) -> Path:
    """Unpack a downloaded artifact safely (an unsafe archive is refused whole, and kept)."""
    try:
        into.mkdir(parents=True, exist_ok=True)
        where = safe_extract(archive, into)
    except (ArchiveError, OSError) as exc:
        raise TransfersFailed(f"{archive} was saved but not unpacked: {exc}") from None
    if remove:
        archive.unlink()
    return where


def family(commands, name: str, help: str) -> argparse._SubParsersAction:
    """The subcommands of the family ``name`` (registered earlier), or a new family."""
    parser = commands.choices.get(name) or commands.add_parser(name, help=help)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return subcommands(parser, f"{name}_command")


def register(commands) -> None:
    # Imported here: both import the helpers above.
    from mitosis_tui.commands import artifacts, attachments

    attachments.register(family(commands, "groups", "groups and members"))
    artifacts.register(family(commands, "tasks", "tasks"))
