"""tasks artifacts list|download|upload|delete|download-many|delete-many: task outputs
(FEATURES F2), single, by UUID list or by the task filters of ``tasks query``."""

from __future__ import annotations

import asyncio
from argparse import Namespace
from pathlib import Path

from mitosis_sdk.schemas import ArtifactType, TaskFilter
from mitosis_sdk.schemas.files import ArtifactSelection
from mitosis_sdk.schemas.limits import MAX_PAGE
from mitosis_sdk.units import format_size
from mitosis_tui.commands.files import (
    TransfersFailed,
    destination,
    download_all,
    extract,
    local_file,
    report_many,
    transfer_progress,
)
from mitosis_tui.commands.parsing import build, parse_uuid, split_list, subcommands
from mitosis_tui.commands.session import CommandSession
from mitosis_tui.commands.task_options import add_filter_options, task_filter

ARTIFACT_COLUMNS = [
    ("TYPE", lambda a: a.type),
    ("SIZE", lambda a: format_size(a.size)),
    ("CREATED", lambda a: a.created_at),
    ("BY", lambda a: a.uploaded_by),
    ("ATTEMPT", lambda a: a.attempt),
]


async def list_artifacts(s: CommandSession, args: Namespace) -> None:
    task = parse_uuid(args.uuid)
    s.out.table(await s.call(lambda c: c.list_artifacts(task)), ARTIFACT_COLUMNS)


async def download_artifact(s: CommandSession, args: Namespace) -> None:
    task = parse_uuid(args.uuid)
    link = await s.call(lambda c: c.artifact_link(task, args.type))
    name = f"{task}-{link.type}.tar.gz"
    if args.extract:
        # Saved next to where it unpacks, and kept there when it is refused (as download-many).
        folder = Path(args.output or ".")
        archive = folder / name
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        with transfer_progress(s, link.size, name) as progress:
            await s.client.download_url(link.url, archive, size=link.size, progress=progress)
        where = await asyncio.to_thread(extract, archive, folder, True)
        s.out.done(f"unpacked {name} into {where}", {"path": str(where), "size": link.size})
        return
    dest = destination(args.output, name)
    with transfer_progress(s, link.size, name) as progress:
        await s.client.download_url(link.url, dest, size=link.size, progress=progress)
    s.out.done(
        f"saved {link.type} of {task} ({format_size(link.size)}) as {dest}",
        {"path": str(dest), "size": link.size},
    )


async def upload_artifact(s: CommandSession, args: Namespace) -> None:
    path = local_file(args.file)
    task = parse_uuid(args.uuid)
    with transfer_progress(s, path.stat().st_size, path.name) as progress:
        info = await s.call(lambda c: c.upload_artifact(task, args.type, path, progress=progress))
    s.out.done(f"uploaded {path} as the {info.type} of {task} ({format_size(info.size)})", info)


async def delete_artifact(s: CommandSession, args: Namespace) -> None:
    task = parse_uuid(args.uuid)
    await s.call(lambda c: c.delete_artifact(task, args.type))
    s.out.done(f"deleted the {args.type} of {task}")


def _artifact_selection(args: Namespace, **page) -> ArtifactSelection:
    uuids = [parse_uuid(text) for text in split_list(args.uuids)]
    task_selection = build(TaskFilter, **task_filter(args), uuids=uuids)
    return build(ArtifactSelection, filter=task_selection, type=ArtifactType(args.type), **page)


async def download_artifacts(s: CommandSession, args: Namespace) -> None:
    folder = Path(args.output)
    links, offset = [], 0
    while True:
        selection = _artifact_selection(args, limit=MAX_PAGE, offset=offset)
        page = await s.call(lambda c, sel=selection: c.artifact_links(sel))
        links += page.links
        offset += len(page.links)
        if not page.links or offset >= page.total:
            break
    tasks, jobs = {}, []
    for link in links:
        name = f"{link.task}-{link.type}"
        tasks[name] = link.task
        jobs.append((name, link.url, link.size, folder / f"{name}.tar.gz"))
    saved, failed = await download_all(s, jobs, f"{len(jobs)} artifact(s)")
    if args.extract:
        for item in list(saved):
            try:
                where = await asyncio.to_thread(
                    extract, Path(item["path"]), folder / str(tasks[item["name"]]), True
                )
            except TransfersFailed as exc:
                failed.append({"name": item["name"], "error": exc.message})
                saved.remove(item)
            else:
                item["path"] = str(where)
    report_many(s, saved, failed, folder)


async def delete_artifacts(s: CommandSession, args: Namespace) -> None:
    reply = await s.call(lambda c: c.delete_artifacts(_artifact_selection(args)))
    s.out.done(f"deleted {reply.deleted} artifact(s), freed {format_size(reply.freed)}", reply)


# --- grammar ---------------------------------------------------------------------------------


def _type_argument(p) -> None:
    kinds = [t.value for t in ArtifactType]
    p.add_argument("type", metavar="TYPE", choices=kinds, help=", ".join(kinds))


def register(tasks) -> None:
    files = subcommands(tasks.add_parser("artifacts", help="outputs of tasks"), "artifacts_command")
    p = files.add_parser("list", help="a task's artifacts")
    p.add_argument("uuid", metavar="UUID")
    p.set_defaults(handler=list_artifacts)

    p = files.add_parser("download", help="download one artifact (a tar.gz)")
    p.add_argument("uuid", metavar="UUID")
    _type_argument(p)
    p.add_argument("-o", "--output", metavar="PATH", help="file or directory (default: here)")
    p.add_argument("--extract", action="store_true", help="unpack it (safely) instead")
    p.set_defaults(handler=download_artifact)

    p = files.add_parser("upload", help="upload a file as a task's artifact")
    p.add_argument("file", metavar="FILE")
    p.add_argument("uuid", metavar="UUID")
    _type_argument(p)
    p.set_defaults(handler=upload_artifact)

    p = files.add_parser("delete", help="delete one artifact")
    p.add_argument("uuid", metavar="UUID")
    _type_argument(p)
    p.set_defaults(handler=delete_artifact)

    p = files.add_parser("download-many", help="download artifacts of matching tasks")
    _type_argument(p)
    add_filter_options(p)
    p.add_argument("--uuids", action="append", help="these tasks (comma-separated)")
    p.add_argument("-o", "--output", metavar="DIR", required=True, help="target directory")
    p.add_argument("--extract", action="store_true", help="unpack each into DIR/<uuid>/")
    p.set_defaults(handler=download_artifacts)

    p = files.add_parser("delete-many", help="delete artifacts of matching tasks")
    _type_argument(p)
    add_filter_options(p)
    p.add_argument("--uuids", action="append", help="these tasks (comma-separated)")
    p.set_defaults(handler=delete_artifacts)
