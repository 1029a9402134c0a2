"""Moving bytes to and from presigned URLs: streamed, in parts, retried, with progress.

The client's file helpers and the worker both use these. Nothing reads a whole file into
memory: an upload streams the file in 1 MiB chunks (a multipart upload sends up to
``concurrency`` parts at once, each read from its own offset); a download streams into a
scratch file beside the target (in 4 MiB writes), renamed into place only once it is
complete and of the expected size, so a failed download never leaves a truncated file under
the real name.

The URLs carry their own authorisation: these requests never carry the coordinator's token.
Connection failures and 5xx answers are retried with backoff; 4xx answers (an expired URL,
a refused size) are final. ``progress`` is called with each number of bytes moved, and with
a negative number when a retry sends bytes again.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import httpx

from mitosis_sdk.errors import MitosisError
from mitosis_sdk.schemas.files import CompletedPart, Upload

__all__ = ["CHUNK", "Progress", "TransferError", "get_file", "put_file"]

CHUNK = 2**20
WRITE_BUFFER = 4 * 2**20
ATTEMPTS = 4
BACKOFF = 0.5
Progress = Callable[[int], None]


class TransferError(MitosisError):
    """Bytes could not be moved to or from a presigned URL (after retries), or the local file
    does not match what was declared; the message says which."""


def _ignore(_: int) -> None:
    pass


def _refusal(response: httpx.Response, what: str) -> TransferError:
    text = response.text.strip().replace("\n", " ")[:300] if response.content else ""
    return TransferError(f"{what} was refused: HTTP {response.status_code} {text}".strip())


async def _file_chunks(
    path: Path, offset: int, size: int, progress: Progress, sent: list[int]
) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as file:
        await file.seek(offset)
        remaining = size
        while remaining:
            chunk = await file.read(min(CHUNK, remaining))
            if not chunk:
                raise TransferError(f"{path} became shorter while it was being sent")
            remaining -= len(chunk)
            sent[0] += len(chunk)
            progress(len(chunk))
            yield chunk


async def _put(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    headers: dict[str, str],
    path: Path,
    offset: int,
    size: int,
    progress: Progress,
) -> str:
    """PUT ``size`` bytes of ``path`` from ``offset``; returns the reply's ETag."""
    for attempt in range(ATTEMPTS):
        sent = [0]
        body = _file_chunks(path, offset, size, progress, sent)
        try:
            response = await http.request(method, url, content=body, headers=headers)
        except httpx.TransportError as exc:
            failure = TransferError(f"upload to {_host(url)} failed: {exc or type(exc).__name__}")
        else:
            if response.status_code < 300:
                return response.headers.get("etag", "")
            failure = _refusal(response, f"upload to {_host(url)}")
            if response.status_code < 500:
                raise failure
        finally:
            await body.aclose()
        progress(-sent[0])
        if attempt + 1 == ATTEMPTS:
            raise failure
        await asyncio.sleep(BACKOFF * 2**attempt)
    raise AssertionError("unreachable")


def _host(url: str) -> str:
    return httpx.URL(url).host or "the store"


async def put_file(
    http: httpx.AsyncClient,
    upload: Upload,
    path: str | Path,
    progress: Progress | None = None,
    concurrency: int = 4,
) -> list[CompletedPart]:
    """Send ``path`` as ``upload`` says; returns the parts to complete (none for one PUT)."""
    path, progress = Path(path), progress or _ignore
    actual = path.stat().st_size
    if upload.multipart is None:
        declared = int(upload.headers.get("Content-Length", actual))
        if actual != declared:
            raise TransferError(f"{path} has {actual} bytes, but {declared} were declared")
        await _put(http, upload.method, upload.url, upload.headers, path, 0, actual, progress)
        return []
    parts = upload.multipart.parts
    declared = sum(part.size for part in parts)
    if actual != declared:
        raise TransferError(f"{path} has {actual} bytes, but {declared} were declared")
    gate = asyncio.Semaphore(concurrency)
    done: dict[int, CompletedPart] = {}

    async def send(part) -> None:
        async with gate:
            etag = await _put(
                http, upload.method, part.url, part.headers, path, part.offset, part.size, progress
            )
        done[part.number] = CompletedPart(number=part.number, etag=etag)

    try:
        async with asyncio.TaskGroup() as group:
            for part in parts:
                group.create_task(send(part))
    except* MitosisError as failures:  # the first part that failed says why
        raise failures.exceptions[0] from None
    return [done[number] for number in sorted(done)]


async def _save(response: httpx.Response, path: Path, progress: Progress) -> int:
    """Write the body into ``path``; the number of bytes received.

    The raw body (the object as stored, never decoded), gathered into ``WRITE_BUFFER``
    writes, each in a thread: one thread hop per 4 MiB instead of one per network chunk, and
    no re-chunking copy. Re-chunking plus a write per MiB held a download to ~165 MB/s on a
    whole core of the client; this gives ~400 MB/s (bench/REPORT.md, files)."""
    # A response that was read already (a mock transport's) has only its content left.
    body = response.aiter_bytes() if response.is_stream_consumed else response.aiter_raw()
    file = await asyncio.to_thread(open, path, "wb")
    received, pending = 0, bytearray()
    try:
        async for chunk in body:
            pending += chunk
            received += len(chunk)
            progress(len(chunk))
            if len(pending) >= WRITE_BUFFER:
                await asyncio.to_thread(file.write, pending)
                pending = bytearray()
        if pending:
            await asyncio.to_thread(file.write, pending)
    finally:
        await asyncio.to_thread(file.close)
    return received


async def get_file(
    http: httpx.AsyncClient,
    url: str,
    dest: str | Path,
    *,
    size: int | None = None,
    progress: Progress | None = None,
) -> int:
    """Save the body at ``url`` as ``dest`` (replacing it); returns the number of bytes."""
    dest, progress = Path(dest), progress or _ignore
    scratch = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.part")
    try:
        for attempt in range(ATTEMPTS):
            received = 0
            try:
                async with http.stream("GET", url) as response:
                    if response.status_code >= 300:
                        await response.aread()
                        failure = _refusal(response, f"download from {_host(url)}")
                        if response.status_code < 500:
                            raise failure
                    else:
                        received = await _save(response, scratch, progress)
                        if size is not None and received != size:
                            raise TransferError(
                                f"download from {_host(url)} ended after {received} of {size} bytes"
                            )
                        await anyio.to_thread.run_sync(os.replace, scratch, dest)
                        return received
            except httpx.TransportError as exc:
                failure = TransferError(
                    f"download from {_host(url)} failed: {exc or type(exc).__name__}"
                )
            progress(-received)
            if attempt + 1 == ATTEMPTS:
                raise failure
            await asyncio.sleep(BACKOFF * 2**attempt)
        raise AssertionError("unreachable")
    finally:
        await anyio.Path(scratch).unlink(missing_ok=True)
