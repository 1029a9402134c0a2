"""Live streams over Server-Sent Events (FEATURES E2, X5), and the worker's log shipping.

* ``GET /api/events?cursor=C&group=G…`` — committed task/worker events of the groups the
  caller may read (``group`` narrows it), each as ``id: <cursor>`` / ``event: <kind>`` /
  ``data: <Event JSON>``. Without ``cursor`` the stream starts from now; with one it resumes
  right after it (no gap, no duplicate), and a cursor the bus no longer keeps is a 400 before
  anything is streamed.
* ``GET /api/tasks/{uuid}/logs?follow=&cursor=`` — the task's kept log lines in chunks
  (``log.chunk``: the lines one shipment carried), then (with ``follow``) live ones, then a
  ``log.end`` item; 404 for a task the caller cannot see. A cursor may name any line.
* ``POST /api/workers/{worker}/tasks/{task}/logs`` — a worker ships a batch of lines of the
  attempt it holds.

Events come from the coordinator's one shared reader (events/fanout.py), framed once per
event and handed over in chunks; a client that does not drain them in time gets a final
``error`` item (``too_slow``) and ends, so the coordinator never waits for a slow client.
Every open stream is re-checked about once a second (services/stream_access.py): a revoked
session or a lost group ends it with a final ``error`` item. A comment line every
``HEARTBEAT`` seconds keeps proxies from closing an idle stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import FromQuery, JSONBody
from litestar.response import Stream
from litestar.status_codes import HTTP_204_NO_CONTENT

from mitosis_sdk.schemas.events import Event, LogBatch, LogChunk, LogEnd, StreamError
from mitosis_server.api.guards import DB, Caller, PathUUID, own_worker_only, users_only
from mitosis_server.db.engine import reading
from mitosis_server.events import EventBusUnavailable, InvalidCursor
from mitosis_server.services import streams
from mitosis_server.state import Coordinator

log = logging.getLogger(__name__)

HEARTBEAT = 15.0
WAKE = 1.0  # how long one wait for the next chunk lasts (heartbeats count these)
QUEUE_CHUNKS = 64
STATE_CHECK = 5.0
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

_encoder = msgspec.json.Encoder()


SLOW = (
    "this client fell too far behind and was disconnected; reconnect with the last cursor"
    " it received"
)


def _coordinator(request: Request) -> Coordinator:
    return request.app.state.coordinator


def sse_item(item: Event | LogChunk | LogEnd | StreamError) -> bytes:
    kind = item.kind if isinstance(item, Event) else type(item).__struct_config__.tag
    cursor = getattr(item, "cursor", None)
    head = f"id: {cursor}\n" if cursor else ""
    return f"{head}event: {kind}\ndata: ".encode() + _encoder.encode(item) + b"\n\n"


TOO_SLOW = sse_item(StreamError(error="too_slow", message=SLOW))
SHUTTING_DOWN = sse_item(
    StreamError(error="unavailable", message="the coordinator is shutting down; reconnect")
)


class _Last(bytes):
    """The last bytes of a stream (empty: it just ends)."""


class _Pumped:
    """A source of chunks drained by a background task into a bounded queue, taken like a
    fan-out subscription (the log streams' follower reads the bus at its own pace)."""

    def __init__(self, chunks: AsyncIterator[bytes], extra: list | None = None) -> None:
        self._queue: asyncio.Queue = asyncio.Queue(QUEUE_CHUNKS)
        self._tasks = [asyncio.create_task(self._pump(chunks), name="stream-reader")]
        self._tasks += extra or []

    async def _pump(self, chunks: AsyncIterator[bytes]) -> None:
        try:
            async with contextlib.aclosing(chunks) as source:
                async for chunk in source:
                    await self._queue.put(chunk)  # a slow client holds the follower back
        except Exception as exc:
            await self._queue.put(exc)
            return
        await self._queue.put(_Last())

    async def take(self, timeout: float) -> tuple[bytes, bool]:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                item = await self._queue.get()
        except TimeoutError:
            return b"", False
        if isinstance(item, Exception):
            raise item
        return bytes(item), isinstance(item, _Last)

    def end(self, final: bytes) -> None:
        """Stop now, ``final`` being the last thing sent (room is made for it)."""
        self._tasks[0].cancel()
        with contextlib.suppress(asyncio.QueueEmpty):
            while self._queue.full():
                self._queue.get_nowait()
        self._queue.put_nowait(_Last(final))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _serve(
    coordinator: Coordinator, principal, groups: set[str] | None, explicit: bool, source
) -> AsyncIterator[bytes]:
    """Send the source's chunks, with heartbeats, until it ends, fails, or the caller's
    access to it does (a revoked session, a group lost: services/stream_access.py)."""
    watch = coordinator.stream_access.watch(
        principal, groups, explicit, lambda error: source.end(sse_item(error))
    )
    idle = 0.0
    try:
        yield b": connected\n\n"
        while True:
            try:
                chunk, last = await source.take(WAKE)
            except InvalidCursor as exc:
                yield sse_item(StreamError(error="invalid_cursor", message=exc.message))
                return
            except EventBusUnavailable as exc:
                yield sse_item(StreamError(error="unavailable", message=exc.message))
                return
            except Exception as exc:  # never a traceback into a stream
                log.warning("stream.reader_failed error=%s", exc)
                yield sse_item(StreamError(error="unavailable", message="the stream failed"))
                return
            if chunk:
                idle = 0.0
                yield chunk
            elif not last:
                idle += WAKE
                if idle >= HEARTBEAT:
                    idle = 0.0
                    yield b": keepalive\n\n"
            if last:
                return
    finally:
        coordinator.stream_access.release(watch)
        await source.close()


class EventController(Controller):
    path = "/api"
    tags = ["events"]
    guards = [users_only]

    @get("/events", summary="Live task and worker events (SSE), resumable from a cursor")
    async def events(
        self,
        request: Request,
        principal: Caller,
        cursor: FromQuery[str | None] = None,
        group: FromQuery[list[str] | None] = None,
    ) -> Stream:
        coordinator = _coordinator(request)
        bus = coordinator.events
        async with reading(coordinator.sessions) as db:
            groups = await streams.readable_groups(db, principal, group)
        if cursor is None:
            cursor = await bus.latest_cursor()
        else:
            await bus.read_events(cursor, limit=1)  # an unusable cursor is a 400 now
        subscription = coordinator.fanout.open(
            None if groups is None else frozenset(groups), cursor
        )
        return Stream(
            _serve(coordinator, principal, groups, bool(group), subscription),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )

    @get("/tasks/{task_id:uuid}/logs", summary="A task's live log (SSE): backlog, live, end")
    async def logs(
        self,
        request: Request,
        principal: Caller,
        task_id: PathUUID,
        follow: FromQuery[bool] = False,
        cursor: FromQuery[str | None] = None,
    ) -> Stream:
        coordinator = _coordinator(request)
        bus = coordinator.events
        async with reading(coordinator.sessions) as db:
            task = await streams.readable_task(db, principal, task_id)
        key = str(task_id)
        await bus.read_log(key, cursor, limit=1)  # an unusable cursor is a 400 now
        if follow and not task.ended:
            source, extra = bus.follow_log(key, cursor), []
            # The end marker is published after the final commit; should it be lost (Redis
            # down then), the task's state in the database still ends the stream.
            extra.append(asyncio.create_task(_end_when_done(coordinator, key, task_id)))
        else:
            source, extra = _backlog(bus, key, cursor), []
        return Stream(
            _serve(coordinator, principal, {task.group}, True, _Pumped(_framed(source), extra)),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )


async def _framed(items: AsyncIterator[LogChunk | LogEnd]) -> AsyncIterator[bytes]:
    async with contextlib.aclosing(items) as source:
        async for item in source:
            yield sse_item(item)
            if isinstance(item, LogEnd):
                return


async def _backlog(bus, key: str, cursor: str | None) -> AsyncIterator[LogChunk | LogEnd]:
    """Every kept line after ``cursor``, then an end marker (a synthetic one if none kept)."""
    while True:
        items = await bus.read_log(key, cursor)
        for item in items:
            yield item
            if isinstance(item, LogEnd):
                return
        if not items:
            yield LogEnd(task_id=key)
            return
        cursor = items[-1].cursor


async def _end_when_done(coordinator: Coordinator, key: str, task_id) -> None:
    """Close a followed log if the task ended but its end marker never came."""
    while True:
        await asyncio.sleep(STATE_CHECK)
        # This task is cancelled whenever the stream ends: never halfway through a look.
        state = await asyncio.shield(_task_state(coordinator, task_id))
        if state is None or state in streams.TERMINAL:
            await asyncio.sleep(STATE_CHECK)  # let a late marker (and lines) arrive first
            await coordinator.events.end_log(key)
            return


async def _task_state(coordinator: Coordinator, task_id) -> str | None:
    async with reading(coordinator.sessions) as db:
        return await streams.task_state(db, task_id)


class LogShippingController(Controller):
    path = "/api/workers/{worker_id:uuid}/tasks/{task_id:uuid}"
    tags = ["worker daemon"]
    guards = [own_worker_only]

    @post("/logs", status_code=HTTP_204_NO_CONTENT, summary="Ship live log lines of an attempt")
    async def ship(
        self,
        request: Request,
        db: DB,
        worker_id: PathUUID,
        task_id: PathUUID,
        data: JSONBody[LogBatch],
    ) -> None:
        """Fenced like the other reports: only the worker holding this open attempt."""
        await streams.ship_lines(db, _coordinator(request).events, worker_id, task_id, data)


ROUTES = [EventController, LogShippingController]
