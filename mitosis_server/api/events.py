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
from mitosis_server.events import EventBusUnavailable, InvalidCursor
from mitosis_server.services import streams
from mitosis_server.state import Coordinator

log = logging.getLogger(__name__)

HEARTBEAT = 15.0
QUEUE_CHUNKS = 64
STATE_CHECK = 5.0
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

_encoder = msgspec.json.Encoder()


class _End(bytes):
    """The last bytes of a stream (empty: it just ends)."""


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


async def _pump(chunks: AsyncIterator[bytes], queue: asyncio.Queue) -> None:
    """Source → queue; the queue's bound makes a slow client hold the source back (the
    shared event reader drops such a subscriber rather than wait for it)."""
    try:
        async with contextlib.aclosing(chunks) as source:
            async for chunk in source:
                if chunk:
                    await queue.put(chunk)
    except InvalidCursor as exc:
        _final(queue, StreamError(error="invalid_cursor", message=exc.message))
        return
    except EventBusUnavailable as exc:
        _final(queue, StreamError(error="unavailable", message=exc.message))
        return
    except Exception as exc:  # never a crash in a background reader
        log.warning("stream.reader_failed error=%s", exc)
        _final(queue, StreamError(error="unavailable", message="the event stream failed"))
        return
    await queue.put(_End())


def _final(queue: asyncio.Queue, error: StreamError) -> None:
    """Make room for the last item even in a full queue (the stream ends with it)."""
    with contextlib.suppress(asyncio.QueueEmpty):
        while queue.full():
            queue.get_nowait()
    queue.put_nowait(_End(sse_item(error)))


async def _serve(
    coordinator: Coordinator,
    principal,
    groups: set[str] | None,
    explicit: bool,
    chunks: AsyncIterator[bytes],
    extra: list | None = None,
) -> AsyncIterator[bytes]:
    """Send the source's chunks, with heartbeats, until it ends, fails, or the caller's
    access to it does (a revoked session, a group lost: services/stream_access.py)."""
    queue: asyncio.Queue = asyncio.Queue(QUEUE_CHUNKS)
    reader = asyncio.create_task(_pump(chunks, queue), name="stream-reader")
    background = [reader, *(extra or [])]

    def end(error: StreamError) -> None:
        reader.cancel()
        _final(queue, error)

    watch = coordinator.stream_access.watch(principal, groups, explicit, end)
    try:
        yield b": connected\n\n"
        while True:
            try:
                async with asyncio.timeout(HEARTBEAT):
                    item = await queue.get()
            except TimeoutError:
                yield b": keepalive\n\n"
                continue
            if item:
                yield bytes(item)
            if isinstance(item, _End):
                return
    finally:
        coordinator.stream_access.release(watch)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)


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
        async with coordinator.sessions() as db:
            groups = await streams.readable_groups(db, principal, group)
        if cursor is None:
            cursor = await bus.latest_cursor()
        else:
            await bus.read_events(cursor, limit=1)  # an unusable cursor is a 400 now
        chunks = coordinator.fanout.subscribe(None if groups is None else frozenset(groups), cursor)
        return Stream(
            _serve(coordinator, principal, groups, bool(group), chunks),
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
        async with coordinator.sessions() as db:
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
            _serve(coordinator, principal, {task.group}, True, _framed(source), extra),
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
        async with coordinator.sessions() as db:
            state = await streams.task_state(db, task_id)
        if state is None or state in streams.TERMINAL:
            await asyncio.sleep(STATE_CHECK)  # let a late marker (and lines) arrive first
            await coordinator.events.end_log(key)
            return


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
