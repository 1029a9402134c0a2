"""The local object store's file work: bodies written in large pieces at an offset, the
per-part locks and markers of a multipart upload, and joining it in place
(see :mod:`mitosis_server.storage.local` for the layout and the guarantees).

Everything here but :func:`write_body` is blocking and runs in a worker thread.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import AsyncIterable
from pathlib import Path

import anyio

from mitosis_server.storage.base import CompletedPart, StorageError, UploadIncomplete

_ETAG = re.compile(r'"?([0-9a-f]{32})"?')
WRITE_SIZE = 4 * 2**20  # bytes gathered per write (one thread hop)


class PartBusy(StorageError):
    """Another request is receiving the same part of a multipart upload right now."""


class SizeMismatch(StorageError):
    """The body is longer (``too_long``) or shorter than the size the URL was signed for."""

    def __init__(self, message: str, *, too_long: bool) -> None:
        super().__init__(message)
        self.too_long = too_long


async def write_body(fd: int, offset: int, size: int, chunks: AsyncIterable[bytes]) -> None:
    """Write exactly ``size`` bytes of ``chunks`` at ``offset`` of ``fd``, WRITE_SIZE at a
    time; SizeMismatch the moment the body passes ``size``, or at its end when short."""
    buffer = bytearray()
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > size:
            raise SizeMismatch(
                f"the body is longer than the {size} bytes this URL allows", too_long=True
            )
        buffer += chunk
        if len(buffer) >= WRITE_SIZE:
            await anyio.to_thread.run_sync(_write_all, fd, buffer, offset)
            offset += len(buffer)
            buffer.clear()
    if received < size:
        raise SizeMismatch(
            f"the body has {received} of the {size} bytes this URL expects", too_long=False
        )
    if buffer:
        await anyio.to_thread.run_sync(_write_all, fd, buffer, offset)


def _write_all(fd: int, data: bytearray, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def lock_part(folder: Path, number: int) -> int:
    """Hold part ``number``'s lock (across processes); StorageError when another request is
    receiving it right now. FileNotFoundError when the upload is gone."""
    fd = os.open(folder / f"{number:05d}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise PartBusy(f"part {number} is being received by another request") from None
    return fd


def drop_markers(folder: Path, number: int) -> None:
    for marker in folder.glob(f"{number:05d}-*"):
        marker.unlink(missing_ok=True)


def join_parts(folder: Path, parts: list[CompletedPart], target: Path) -> int:
    """Check that ``parts`` are stored with these ETags and cover the object from byte 0
    without a hole, then install the data file, cut to their end; returns its size."""
    end = 0
    locks = []
    try:
        for part in parts:
            locks.append(lock_part(folder, part.number))
            match = _ETAG.fullmatch(part.etag)
            marker = folder / f"{part.number:05d}-{match[1] if match else ''}"
            try:
                offset, size = (int(v) for v in marker.read_text().split())
            except (FileNotFoundError, ValueError):
                raise UploadIncomplete(
                    f"part {part.number} is missing or has another ETag"
                ) from None
            if offset != end:
                raise UploadIncomplete(f"part {part.number} does not follow the part before it")
            end = offset + size
        data = folder / "data"
        with data.open("r+b") as file:
            file.truncate(end)
            os.fsync(file.fileno())
        install(data, target, True)
    except PartBusy as exc:
        raise UploadIncomplete(str(exc)) from None
    finally:
        for lock in locks:
            os.close(lock)
    return end


def install(scratch: Path, target: Path, make_parent: bool) -> None:
    """Move a finished file into place atomically (a part's folder must still exist)."""
    if make_parent:
        target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(scratch, target)
