"""Shipping a task's live output to the coordinator (FEATURES X5).

:func:`log_shipper` returns a :data:`~mitosis_worker.logs.LogSink` for one attempt: the
capture's pump hands it batches of lines, it posts them (in pieces the coordinator accepts)
through the client. It never raises into the executor: a batch that cannot be shipped (the
coordinator is down, the attempt was superseded, a timeout) is dropped with one log line, and
the task runs on. Lines are hints for people watching; the ``std-log`` artifact is the record.
After ``MAX_FAILURES`` failures in a row the shipper gives up for this attempt, so a task
whose coordinator is gone does not pay a timeout per batch.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable

from mitosis_sdk.schemas.events import MAX_LOG_BATCH, MAX_LOG_LINE
from mitosis_worker.logs import LogLine, LogSink

log = logging.getLogger(__name__)

SHIP_TIMEOUT = 10.0
MAX_FAILURES = 5
# Bytes per request, well below the coordinator's default body limit.
MAX_BATCH_BYTES = 4 * 2**20

Ship = Callable[[str, str, int, list[tuple[str, str]]], Awaitable[None]]


def _pieces(lines: list[LogLine]) -> list[list[tuple[str, str]]]:
    pieces, piece, size = [], [], 0
    for line in lines:
        text = line.text[:MAX_LOG_LINE]
        if piece and (len(piece) >= MAX_LOG_BATCH or size + len(text) > MAX_BATCH_BYTES):
            pieces.append(piece)
            piece, size = [], 0
        piece.append((line.stream, text))
        size += len(text) + 32
    if piece:
        pieces.append(piece)
    return pieces


def log_shipper(client, worker: uuid.UUID | str, task: uuid.UUID | str, attempt: int) -> LogSink:
    """A sink posting ``(stream, text)`` lines of this attempt with ``client.ship_logs``."""
    worker, task = str(worker), str(task)
    failures = 0

    async def sink(lines: list[LogLine]) -> None:
        nonlocal failures
        if failures >= MAX_FAILURES or not lines:
            return
        for piece in _pieces(lines):
            try:
                async with asyncio.timeout(SHIP_TIMEOUT):
                    await client.ship_logs(worker, task, attempt, piece)
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
