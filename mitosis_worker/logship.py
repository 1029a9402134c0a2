"""Shipping a task's live output (FEATURES X5): straight into Redis, or through the coordinator.

:func:`log_shipper` returns a :data:`~mitosis_worker.logs.LogSink` for one attempt: the
capture's pump hands it batches of lines (as many as gathered since the last one, see
``LogLimits.linger``), it numbers them (the attempt's lines count from 1: a line's number is
its position in the log) and ships each batch as one chunk:

* with a :class:`RedisLogWriter` (the coordinator handed out Redis credentials at
  registration), as one ``XADD`` into the task's log stream, without the coordinator. The
  Redis user may only append to log streams and wake their followers: it reads nothing;
* otherwise, or once Redis refuses (wrong password after a rotation, no permission, not
  reachable), through ``POST …/logs`` on the coordinator, which checks that this worker
  still holds the attempt.

It never raises into the executor: a batch that cannot be shipped (the coordinator is down,
the attempt was superseded, a timeout) is dropped with one log line, and the task runs on.
Lines are hints for people watching; the ``std-log`` artifact is the record. After
``MAX_FAILURES`` failures in a row the shipper gives up for this attempt, so a task whose
coordinator is gone does not pay a timeout per batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from mitosis_sdk.schemas.events import (
    MAX_LOG_BATCH,
    MAX_LOG_LINE,
    LogChunk,
    RedisShipping,
    ShippedLine,
    line_cursor,
)
from mitosis_worker.logs import LogLine, LogSink

log = logging.getLogger(__name__)

SHIP_TIMEOUT = 10.0
REDIS_TIMEOUT = 5.0
MAX_FAILURES = 5
# Bytes per request, well below the coordinator's default body limit.
MAX_BATCH_BYTES = 4 * 2**20

_encoder = msgspec.json.Encoder()


def _pieces(lines: list[LogLine]) -> list[list[ShippedLine]]:
    pieces, piece, size = [], [], 0
    for stream, text in lines:
        if len(text) > MAX_LOG_LINE:
            text = text[:MAX_LOG_LINE]
        if piece and (len(piece) >= MAX_LOG_BATCH or size + len(text) > MAX_BATCH_BYTES):
            pieces.append(piece)
            piece, size = [], 0
        piece.append(ShippedLine(stream, text))
        size += len(text) + 16
    if piece:
        pieces.append(piece)
    return pieces


class RedisLogWriter:
    """The worker's own connection to Redis for live logs, shared by its attempts.

    ``usable`` turns False at the first refusal or outage (logged once): the shippers then
    go through the coordinator for the rest of the worker's life.
    """

    def __init__(self, target: RedisShipping) -> None:
        self.target = target
        self.usable = True
        self._redis = Redis.from_url(
            target.url,
            username=target.username,
            password=target.password,
            socket_connect_timeout=REDIS_TIMEOUT,
            socket_timeout=REDIS_TIMEOUT,
        )

    async def append(self, task: str, attempt: int, first: int, lines: list[ShippedLine]) -> None:
        """One chunk at the position of its last line; one already there is not an error
        (a retry), any other refusal is raised."""
        target, last = self.target, first + len(lines) - 1
        chunk = LogChunk(task_id=task, attempt=attempt, first=first, lines=lines, at=time.time())
        key = target.key_prefix + task
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xadd(
                key,
                {"d": _encoder.encode(chunk)},
                id=line_cursor(attempt, last),
                minid=line_cursor(attempt, max(0, last - target.log_cap + 1)),
                approximate=False,
            )
            pipe.pexpire(key, max(1, int(target.idle_ttl * 1000)))
            pipe.publish(target.wake_prefix + task, "worker")
            added, *rest = await pipe.execute(raise_on_error=False)
        for result in (added, *rest):
            if isinstance(result, ResponseError) and "equal or smaller" not in str(result):
                raise result

    def refused(self, exc: BaseException) -> None:
        if self.usable:
            self.usable = False
            log.warning(
                "logship.redis_refused error=%s; shipping live logs through the coordinator",
                exc,
            )

    async def aclose(self) -> None:
        await self._redis.aclose()


def log_shipper(
    client,
    worker: uuid.UUID | str,
    task: uuid.UUID | str,
    attempt: int,
    redis: RedisLogWriter | None = None,
) -> LogSink:
    """A sink shipping this attempt's lines, numbered from 1, as one chunk per batch."""
    worker, task = str(worker), str(task)
    failures = 0
    next_line = 1

    async def ship(piece: list[ShippedLine], first: int) -> None:
        if redis is not None and redis.usable:
            try:
                async with asyncio.timeout(REDIS_TIMEOUT):
                    await redis.append(task, attempt, first, piece)
                return
            except (RedisError, OSError, TimeoutError) as exc:
                redis.refused(exc)
        async with asyncio.timeout(SHIP_TIMEOUT):
            await client.ship_logs(worker, task, attempt, piece, first_line=first)

    async def sink(lines: list[LogLine]) -> None:
        nonlocal failures, next_line
        if failures >= MAX_FAILURES or not lines:
            return
        for piece in _pieces(lines):
            first, next_line = next_line, next_line + len(piece)
            try:
                await ship(piece, first)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning(
                    "logship.dropped task=%s attempt=%s lines=%d error=%s%s",
                    task,
                    attempt,
                    len(piece),
                    type(exc).__name__,
                    " (giving up for this attempt)" if failures >= MAX_FAILURES else "",
                )
                if failures >= MAX_FAILURES:
                    return

    return sink
