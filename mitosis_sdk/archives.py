"""Task outputs as tar.gz archives with one top folder, and the only safe way to unpack them.

The worker packs ``MITO_RESULT_DIR`` as ``result/…``, ``MITO_EXEC_DIR`` as ``exec-log/…`` and
the captured output as ``std-log/stdout.log``; clients unpack what they download. An archive
is written by a task, so it is untrusted input: :func:`safe_extract` checks every member
before it writes a byte and refuses the whole archive on the first bad one, rather than
skipping members (a partial result looks complete) or trusting the extraction filter alone.

A member is accepted when it is a file, directory, symlink or hardlink; its name follows the
key rules (no absolute paths, ``..`` or empty segments) and starts with the top folder, which
is a real directory; no name repeats; no member sits below a symlink (writing through a link
is how archives escape); a symlink's target, read segment by segment from where the link
stands, never leaves the top folder nor passes through another symlink; a hardlink points at
an earlier regular file. Devices, FIFOs and anything else are refused. The symlink checks
compare names Unicode-composed and case-folded, so a case-insensitive filesystem cannot turn
``Link/x`` into a write through ``link``.

:func:`pack_directory` writes only what :func:`safe_extract` accepts: links that would escape
and special files are left out and reported. Both stream through ``tarfile`` and gzip, so
memory stays flat whatever the size; both block, so async callers run them in a thread.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import tarfile
import tempfile
import unicodedata
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mitosis_sdk.keys import safe_relative_path

__all__ = ["ArchiveError", "Packed", "pack_directory", "safe_extract"]

_COMPRESS_LEVEL = 6  # gzip's own default: most of level 9's ratio at a fraction of its time


class ArchiveError(ValueError):
    """The archive is unreadable or unsafe; the message names the member and the rule."""


@dataclass(frozen=True)
class Packed:
    """What :func:`pack_directory` wrote: the archive's size and what it left out, and why."""

    size: int
    skipped: tuple[str, ...]


def _fold(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def _check_top(top: str) -> str:
    top = safe_relative_path(top)
    if "/" in top:
        raise ValueError(f"top folder must be one segment, got {top!r}")
    return top


def _link_escapes(name: str, target: str, top: str, is_symlink: Callable[[str], bool]) -> str:
    """Why the symlink ``name -> target`` may leave ``top``, or ``""`` when it stays inside."""
    if not target or target.startswith("/"):
        return "an absolute or empty symlink target"
    parts = name.split("/")[:-1]
    segments = target.split("/")
    for index, segment in enumerate(segments):
        if segment in ("", "."):
            continue
        if segment == "..":
            if len(parts) <= 1:
                return f"a symlink target that leaves {top + '/'!r}"
            parts.pop()
            continue
        parts.append(segment)
        if any(rest not in ("", ".") for rest in segments[index + 1 :]) and is_symlink(
            "/".join(parts)
        ):
            return "a symlink target that passes through another symlink"
    return ""


def pack_directory(source: str | Path, archive: str | Path, top: str) -> Packed:
    """Write ``source``'s tree to ``archive`` (tar.gz) with every member under ``top/``.

    Symlinks that stay inside are kept as links; links that would leave the folder and special
    files (FIFOs, devices; sockets are never archived) are skipped and listed in the result.
    Owners become root and permission bits beyond 0o777 are dropped. ``source`` must be a real
    directory, not a symlink to one.
    """
    top = _check_top(top)
    source = Path(source)
    if source.is_symlink() or not source.is_dir():
        raise ValueError(f"{source} is not a directory")
    skipped: list[str] = []

    def on_disk_symlink(name: str) -> bool:
        return (source / name.partition("/")[2]).is_symlink()

    def has_case_twin(name: str) -> bool:
        path = source / name.partition("/")[2]
        return any(
            other != path.name and _fold(other) == _fold(path.name)
            for other in os.listdir(path.parent)
        )

    def admit(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
        reason = ""
        if member.issym():
            reason = _link_escapes(member.name, member.linkname, top, on_disk_symlink)
            if not reason and has_case_twin(member.name):
                reason = "a symlink whose name differs from another only in case"
        elif not (member.isfile() or member.isdir() or member.islnk()):
            reason = "not a regular file, directory or link"
        if reason:
            skipped.append(f"{member.name}: {reason}")
            return None
        member.uid = member.gid = 0
        member.uname = member.gname = ""
        member.mode &= 0o777
        return member

    archive = Path(archive)
    try:
        with tarfile.open(archive, "w:gz", compresslevel=_COMPRESS_LEVEL) as tar:
            tar.add(source, arcname=top, recursive=True, filter=admit)
    except BaseException:
        archive.unlink(missing_ok=True)
        raise
    return Packed(size=archive.stat().st_size, skipped=tuple(skipped))


def _validate(members: list[tarfile.TarInfo], top: str | None) -> str:
    """The archive's top folder, after every member passed the rules in the module docstring."""
    if not members:
        raise ArchiveError("the archive is empty")
    names = []
    for member in members:
        try:
            names.append(safe_relative_path(member.name))
        except ValueError as exc:
            raise ArchiveError(f"member {member.name!r}: {exc}") from None
    top = top or names[0].split("/")[0]
    symlinks = {_fold(n) for n, m in zip(names, members, strict=True) if m.issym()}
    seen: set[str] = set()
    files: set[str] = set()
    for name, member in zip(names, members, strict=True):
        folded = _fold(name).split("/")
        reason = ""
        if name.split("/")[0] != top:
            reason = f"outside the archive's folder {top + '/'!r}"
        elif name in seen:
            reason = "appears twice"
        elif "/" not in name and not member.isdir():
            reason = "the top folder must be a directory"
        elif any("/".join(folded[:i]) in symlinks for i in range(1, len(folded))):
            reason = "lies below a symlink"
        elif member.issym():
            reason = _link_escapes(name, member.linkname, top, lambda p: _fold(p) in symlinks)
        elif member.islnk():
            target = member.linkname
            with contextlib.suppress(ValueError):
                target = safe_relative_path(target)
            if target not in files:
                reason = "a hardlink to something other than an earlier file in the archive"
        elif member.isfile():
            files.add(name)
        elif not member.isdir():
            reason = "a device, FIFO or other special file"
        if reason:
            raise ArchiveError(f"member {member.name!r}: {reason}")
        seen.add(name)
    return top


def safe_extract(archive: str | Path, dest: str | Path, top: str | None = None) -> Path:
    """Unpack ``archive`` into ``dest`` and return ``dest/<top>``; all or nothing.

    Raises :class:`ArchiveError` before writing anything when any member breaks a rule (see
    the module docstring), when the archive is unreadable, or when ``top`` is given and the
    archive's folder is another. Members land in a scratch folder inside ``dest`` that is
    renamed into place only once complete, so an existing ``dest/<top>`` is never merged
    into (FileExistsError) and a failure midway leaves ``dest`` as it was.
    """
    dest = Path(dest)
    if top is not None:
        top = _check_top(top)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            top = _validate(tar.getmembers(), top)
            target = dest / top
            if os.path.lexists(target):
                raise FileExistsError(f"{target} already exists")
            scratch = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
            try:
                tar.extractall(scratch, filter="data")
                (scratch / top).rename(target)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ArchiveError(f"cannot unpack {archive}: {exc}") from None
    return target
