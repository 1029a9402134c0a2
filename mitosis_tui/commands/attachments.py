"""groups attachments upload|download|get|delete|query|download-many|delete-many and
groups retention: a group's files (FEATURES F3, F5), ``-g`` defaulting to the personal group."""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path

from mitosis_sdk.client.files import path_inside
from mitosis_sdk.errors import MitosisError
from mitosis_sdk.keys import upload_key
from mitosis_sdk.schemas.files import AttachmentSelection
from mitosis_sdk.schemas.limits import MAX_PAGE
from mitosis_sdk.units import format_size
from mitosis_tui.commands.files import (
    default_group,
    destination,
    download_all,
    local_file,
    report_many,
    transfer_progress,
)
from mitosis_tui.commands.parsing import build, split_list, subcommands
from mitosis_tui.commands.session import CommandSession, UsageError

ATTACHMENT_COLUMNS = [
    ("KEY", lambda a: a.key),
    ("SIZE", lambda a: format_size(a.size)),
    ("TYPE", lambda a: a.content_type),
    ("UPDATED", lambda a: a.updated_at),
    ("BY", lambda a: a.creator),
]
ATTACHMENT_FIELDS = [
    ("group", lambda a: a.group),
    ("key", lambda a: a.key),
    ("size", lambda a: f"{a.size} bytes ({format_size(a.size)})"),
    ("content type", lambda a: a.content_type),
    ("uploaded by", lambda a: a.creator),
    ("created", lambda a: a.created_at),
    ("updated", lambda a: a.updated_at),
]


async def upload_attachment(s: CommandSession, args: Namespace) -> None:
    path = local_file(args.file)
    try:
        key = upload_key(args.key, path.name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    group = await default_group(s, args)
    with transfer_progress(s, path.stat().st_size, path.name) as progress:
        info = await s.call(
            lambda c: c.upload_attachment(
                group, path, key, content_type=args.content_type, progress=progress
            )
        )
    s.out.done(f"uploaded {path} to group {group} as {info.key} ({format_size(info.size)})", info)


async def download_attachment(s: CommandSession, args: Namespace) -> None:
    group = await default_group(s, args)
    link = await s.call(lambda c: c.attachment_link(group, args.key))
    dest = destination(args.output, link.key.rpartition("/")[2])
    with transfer_progress(s, link.size, link.key) as progress:
        await s.client.download_url(link.url, dest, size=link.size, progress=progress)
    s.out.done(
        f"saved {link.key} ({format_size(link.size)}) as {dest}",
        {"key": link.key, "path": str(dest), "size": link.size},
    )


async def get_attachment(s: CommandSession, args: Namespace) -> None:
    group = await default_group(s, args)
    s.out.record(await s.call(lambda c: c.get_attachment(group, args.key)), ATTACHMENT_FIELDS)


async def delete_attachment(s: CommandSession, args: Namespace) -> None:
    group = await default_group(s, args)
    if len(args.keys) == 1:
        await s.call(lambda c: c.delete_attachment(group, args.keys[0]))
        s.out.done(f"deleted {args.keys[0]} from group {group}")
        return
    selection = build(AttachmentSelection, keys=args.keys)
    reply = await s.call(lambda c: c.delete_attachments(group, selection))
    s.out.done(f"deleted {reply.deleted} attachment(s), freed {format_size(reply.freed)}", reply)


def _filter(args: Namespace) -> dict:
    return {"prefix": args.prefix, "contains": args.key_contains}


async def query_attachments(s: CommandSession, args: Namespace) -> None:
    group = await default_group(s, args)
    page = await s.call(
        lambda c: c.query_attachments(group, **_filter(args), limit=args.limit, offset=args.offset)
    )
    if args.count:
        s.out.line(str(page.total))
        if s.out.as_json:
            s.out.json({"total": page.total})
        return
    s.out.table(page.attachments, ATTACHMENT_COLUMNS, raw=page)
    s.out.info(f"{len(page.attachments)} of {page.total} attachment(s) in {group}")


def _selection(args: Namespace, **page) -> AttachmentSelection:
    keys = split_list(args.keys)
    if keys:
        return build(AttachmentSelection, keys=keys, **page)
    if args.prefix is None and args.key_contains is None:
        return build(AttachmentSelection, all=True, **page)
    return build(AttachmentSelection, **_filter(args), **page)


async def download_attachments(s: CommandSession, args: Namespace) -> None:
    group = await default_group(s, args)
    folder = Path(args.output)
    links, offset = [], 0
    while True:
        selection = _selection(args, limit=MAX_PAGE, offset=offset)
        page = await s.call(lambda c, sel=selection: c.attachment_links(group, sel))
        links += page.links
        offset += len(page.links)
        if not page.links or offset >= page.total:
            break
    jobs, failed = [], []
    for link in links:
        try:
            jobs.append((link.key, link.url, link.size, path_inside(folder, link.key)))
        except MitosisError as exc:
            failed.append({"name": link.key, "error": exc.message})
    saved, more = await download_all(s, jobs, f"{len(jobs)} attachment(s)")
    report_many(s, saved, failed + more, folder)


async def delete_attachments(s: CommandSession, args: Namespace) -> None:
    group = await default_group(s, args)
    reply = await s.call(lambda c: c.delete_attachments(group, _selection(args)))
    s.out.done(f"deleted {reply.deleted} attachment(s), freed {format_size(reply.freed)}", reply)


async def retention(s: CommandSession, args: Namespace) -> None:
    """Show the group's artifact retention, or set it (DAYS) or turn it off (``off``)."""
    if args.days is None:
        info = await s.call(lambda c: c.get_retention(args.group))
    else:
        days = None if args.days.lower() in ("off", "none", "0") else args.days
        if days is not None and not days.isdigit():
            raise UsageError(f"expected a number of days or 'off', got {args.days!r}")
        info = await s.call(lambda c: c.set_retention(args.group, days and int(days)))
    kept = f"{info.artifact_days} days" if info.artifact_days else "until deleted"
    s.out.record(info, [("group", lambda i: i.group), ("artifacts kept", lambda _: kept)])


# --- grammar ---------------------------------------------------------------------------------


def _group_option(p) -> None:
    p.add_argument("-g", "--group", help="the group (default: your personal group)")


def _key_filters(p) -> None:
    p.add_argument("-k", "--key-contains", metavar="SUBSTR", help="keys containing this text")
    p.add_argument("--prefix", help="keys starting with this (a folder: 'data/')")


def register(groups) -> None:
    files = subcommands(
        groups.add_parser("attachments", help="files of a group"), "attachments_command"
    )
    p = files.add_parser("upload", help="upload a file (KEY: default its name; 'dir/': inside)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("key", nargs="?", metavar="KEY")
    _group_option(p)
    p.add_argument("--content-type", help="media type (default: guessed from the name)")
    p.set_defaults(handler=upload_attachment)

    p = files.add_parser("download", help="download one attachment")
    p.add_argument("key", metavar="KEY")
    _group_option(p)
    p.add_argument("-o", "--output", metavar="PATH", help="file or directory (default: here)")
    p.set_defaults(handler=download_attachment)

    p = files.add_parser("get", help="show an attachment's metadata")
    p.add_argument("key", metavar="KEY")
    _group_option(p)
    p.set_defaults(handler=get_attachment)

    p = files.add_parser("delete", help="delete attachments by key")
    p.add_argument("keys", nargs="+", metavar="KEY")
    _group_option(p)
    p.set_defaults(handler=delete_attachment)

    p = files.add_parser("query", help="list attachments (key order)")
    _group_option(p)
    _key_filters(p)
    p.add_argument("--limit", type=int, default=100, help="attachments per page (≤ 1000)")
    p.add_argument("--offset", type=int, default=0, help="skip this many")
    p.add_argument("--count", action="store_true", help="print only how many match")
    p.set_defaults(handler=query_attachments)

    p = files.add_parser("download-many", help="download attachments into a directory")
    _group_option(p)
    _key_filters(p)
    p.add_argument("--keys", action="append", help="these keys (comma-separated)")
    p.add_argument("-o", "--output", metavar="DIR", required=True, help="target directory")
    p.set_defaults(handler=download_attachments)

    p = files.add_parser("delete-many", help="delete matching attachments (no filter: all)")
    _group_option(p)
    _key_filters(p)
    p.add_argument("--keys", action="append", help="these keys (comma-separated)")
    p.set_defaults(handler=delete_attachments)

    p = groups.add_parser("retention", help="show or set how long the group keeps artifacts")
    p.add_argument("group", metavar="G")
    p.add_argument("days", nargs="?", metavar="DAYS|off", help="keep artifacts this many days")
    p.set_defaults(handler=retention)
