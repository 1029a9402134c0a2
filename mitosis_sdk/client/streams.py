"""Live streams: task/worker events, a task's log, and a worker shipping its log lines.

The coordinator speaks Server-Sent Events; this module parses them into the wire Structs of
``mitosis_sdk.schemas.events``. Both iterators remember the cursor of the last item they
yielded and, when the coordinator drops them for falling behind, asks them to reconnect (the
caller's groups changed, it is shutting down) or the connection breaks, reconnect from it (a
bounded number of times in a row), so a caller sees every item once. A stream the caller may
no longer follow (session ended, account locked, group lost) raises the typed error a new
request would (``Unauthorized``, ``Forbidden``)::

    async for event in mito.events(groups=["physics"]):
        print(event.kind, event.object_id, event.payload)

    async for line in mito.follow_logs(task_uuid):
        print(line.stream, line.text)
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import httpx
import msgspec

from mitosis_sdk.client.base import BaseClient, _clean
from mitosis_sdk.errors import (
    STATUS_OF_CODE,
    BadRequest,
    ConnectionFailed,
    ErrorBody,
    ErrorCode,
    error_from_body,
)
from mitosis_sdk.schemas import TaskInfo
from mitosis_sdk.schemas.events import (
    Event,
    EventKind,
    LogBatch,
    LogChunk,
    LogEnd,
    LogLine,
    ShippedLine,
    StreamError,
)

_items = msgspec.json.Decoder(Event | LogChunk | LogEnd | StreamError)

# The coordinator sends a comment at least every 15 s; three missed mean the link is dead.
READ_TIMEOUT = 45.0
RECONNECTS = 5
RETRY_PAUSE = 0.5
TERMINAL = {"completed", "failed", "cancelled"}


class _Resume(Exception):
    """The stream ended early in a way a reconnect from the last cursor repairs."""


# Final errors a reconnect cannot repair: the same answer a new request would get.
_FATAL = {code.value for code in ErrorCode} - {ErrorCode.UNAVAILABLE.value}


def _stream_error(item: StreamError) -> Exception:
    """What the last item of a stream means: raise it, or reconnect (too slow, the caller's
    groups changed, the coordinator restarts, the bus failed)."""
    if item.error == "invalid_cursor":
        return BadRequest(item.message, ErrorCode.INVALID_INPUT)
    if item.error in _FATAL:
        code = ErrorCode(item.error)
        body = msgspec.json.encode(ErrorBody(error=code, message=item.message))
        return error_from_body(STATUS_OF_CODE[code], body)
    return _Resume(item.message)


class StreamsAPI(BaseClient):
    async def _sse(
        self, path: str, params: dict[str, Any], on_connect: Callable[[], object] | None = None
    ) -> AsyncIterator[Any]:
        """Decoded items of one SSE response; raises typed errors for 4xx/5xx. ``on_connect``
        is called once the coordinator has accepted the stream (before any item)."""
        headers = {**self._headers(), "Accept": "text/event-stream"}
        timeout = httpx.Timeout(10.0, read=READ_TIMEOUT)
        try:
            async with self._http.stream(
                "GET", path, params=_clean(params), headers=headers, timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    error = error_from_body(response.status_code, await response.aread())
                    if error.code == ErrorCode.UNAVAILABLE:  # e.g. its Redis is down for now
                        raise _Resume(error.message)
                    raise error
                if on_connect is not None:
                    on_connect()
                data: list[str] = []
                async for line in response.aiter_lines():
                    if not line:
                        if data:
                            yield _items.decode("\n".join(data))
                            data = []
                    elif line.startswith("data:"):
                        data.append(line[5:].removeprefix(" "))
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise _Resume(str(exc) or type(exc).__name__) from exc

    async def _resuming(
        self,
        path: str,
        params: dict[str, Any],
        cursor: str | None,
        on_connect: Callable[[], object] | None = None,
        on_drop: Callable[[str], object] | None = None,
    ) -> AsyncIterator[Any]:
        failures = 0
        while True:
            try:
                async for item in self._sse(path, {**params, "cursor": cursor}, on_connect):
                    if isinstance(item, StreamError):
                        raise _stream_error(item)
                    failures = 0
                    if item.cursor:
                        cursor = item.cursor
                    yield item
                return
            except _Resume as exc:
                failures += 1
                if failures > RECONNECTS:
                    raise ConnectionFailed(f"the live stream keeps failing: {exc}") from None
                if on_drop is not None:
                    on_drop(str(exc))
                await asyncio.sleep(RETRY_PAUSE * failures)

    async def events(
        self,
        groups: Iterable[str] | None = None,
        cursor: str | None = None,
        *,
        on_connect: Callable[[], object] | None = None,
        on_drop: Callable[[str], object] | None = None,
    ) -> AsyncIterator[Event]:
        """Committed task/worker events of the caller's groups (or of ``groups``), from
        ``cursor`` (exclusive) or from now; runs until the caller stops iterating.

        ``on_connect`` is called each time the coordinator accepts the stream (at the start
        and after every reconnect), so a live view can say it is connected, and re-read what
        it shows when it started without a cursor (nothing before that moment is replayed).
        ``on_drop(reason)`` is called when the connection broke and a resume from the last
        cursor is about to be tried; after ``RECONNECTS`` failed resumes in a row the
        iterator raises ConnectionFailed.
        """
        params = {"group": list(groups or [])}
        stream = self._resuming("/api/events", params, cursor, on_connect, on_drop)
        async with contextlib.aclosing(stream) as items:
            async for item in items:
                if isinstance(item, Event):
                    yield item

    async def follow_logs(
        self,
        task: uuid.UUID | str,
        *,
        follow: bool = True,
        cursor: str | None = None,
        on_connect: Callable[[], object] | None = None,
    ) -> AsyncIterator[LogLine]:
        """The task's kept live log lines, then (``follow``) new ones until the task ends
        (``on_connect`` as for :meth:`events`)."""
        params = {"follow": "true" if follow else "false"}
        path = f"/api/tasks/{task}/logs"
        stream = self._resuming(path, params, cursor, on_connect)
        async with contextlib.aclosing(stream) as items:
            async for item in items:
                if isinstance(item, LogEnd):
                    return
                if isinstance(item, LogChunk):
                    for line in item.log_lines():
                        yield line

    async def ship_logs(
        self,
        worker: uuid.UUID | str,
        task: uuid.UUID | str,
        attempt: int,
        lines: Iterable[ShippedLine | tuple[str, str]],
        *,
        first_line: int,
    ) -> None:
        """Append ``(stream, text)`` lines, numbered from ``first_line`` (the attempt's lines
        count from 1), to the live log of the attempt the worker holds."""
        shipped = [x if isinstance(x, ShippedLine) else ShippedLine(*x) for x in lines]
        body = LogBatch(attempt=attempt, first_line=first_line, lines=shipped)
        await self.request("POST", f"/api/workers/{worker}/tasks/{task}/logs", body=body)

    async def wait_tasks(
        self,
        tasks: Iterable[uuid.UUID | str],
        *,
        poll: float = 5.0,
    ) -> list[TaskInfo]:
        """Until every task has ended (bound it with ``asyncio.timeout``): woken by the
        event stream, re-checking every ``poll`` seconds in case an event is missed."""
        wanted = [str(t) for t in tasks]
        pending = set(wanted)
        done: dict[str, TaskInfo] = {}
        changed = asyncio.Event()

        async def watch() -> None:
            with contextlib.suppress(Exception):  # the poll is the backstop
                async for event in self.events():
                    if (
                        event.kind == EventKind.TASK_STATE
                        and event.object_id in pending
                        and event.payload.get("state") in TERMINAL
                    ):
                        changed.set()

        watcher = asyncio.create_task(watch(), name="wait-tasks-stream")
        try:
            while True:
                changed.clear()
                for task in list(pending):
                    info = await self.get_task(task)  # type: ignore[attr-defined]
                    if info.state.terminal:
                        done[task] = info
                        pending.discard(task)
                if not pending:
                    return [done[t] for t in wanted]
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(poll):
                        await changed.wait()
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
