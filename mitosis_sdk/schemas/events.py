"""What the live stream carries: state-change events, log lines and the end-of-log marker.

The coordinator publishes these on its event bus and forwards them, filtered by group, over
the one authenticated stream clients follow (FEATURES E1-E3, X5). Each type is tagged
(``"type": "event" | "log.chunk" | "log.end" | "error"``) so a client decodes a mixed stream
with one ``msgspec.json.Decoder``. ``cursor`` is filled in by the bus when an item is read
back: an ordered position a client hands back to resume without a gap.

A task's live log is stored and sent in chunks (:class:`LogChunk`: the lines a worker shipped
in one go), because one stream entry per line cost more than the task producing them. Lines
are numbered per attempt from 1, by the worker, so the position of line ``n`` of attempt
``a`` is simply ``a-n`` (:func:`line_cursor`): a client resumes after any line, not only
after a whole chunk, and a batch shipped twice (a retry) or by a superseded attempt is
refused by position instead of being stored twice.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

import msgspec

from mitosis_sdk.schemas.common import Struct

LogStream = Literal["stdout", "stderr"]


class EventKind(enum.StrEnum):
    TASK_STATE = "task.state"
    TASK_PHASE = "task.phase"
    WORKER_STATE = "worker.state"


class Event(Struct, tag="event", omit_defaults=True):
    """One committed change of a task or worker.

    ``groups`` are the groups whose members may see it: a task's group, or every group with a
    grant on a worker.
    """

    kind: EventKind
    groups: list[str]
    object_id: str
    payload: dict[str, Any] = {}
    cursor: str | None = None


class LogLine(Struct, omit_defaults=True):
    """One output line as clients see it (expanded from a :class:`LogChunk`); ``at`` is when
    its chunk was shipped (Unix time, seconds)."""

    task_id: str
    stream: LogStream
    text: str
    cursor: str | None = None
    at: float | None = None


class LogEnd(Struct, tag="log.end", omit_defaults=True):
    """The task's live log is complete; the archived copy (``std-log``) takes over."""

    task_id: str
    cursor: str | None = None


MAX_LOG_BATCH = 10_000
MAX_LOG_LINE = 64 * 1024


class ShippedLine(Struct, array_like=True):
    """One output line: ``[stream, text]`` on the wire."""

    stream: LogStream
    text: Annotated[str, msgspec.Meta(max_length=MAX_LOG_LINE)]


def line_cursor(attempt: int, line: int) -> str:
    """The cursor of line ``line`` (from 1) of attempt ``attempt`` of a task's log."""
    return f"{attempt}-{line}"


class LogChunk(Struct, tag="log.chunk", omit_defaults=True):
    """Lines ``first`` … ``first + len(lines) - 1`` of one attempt, in the order produced;
    ``cursor`` is the position of the last one."""

    task_id: str
    attempt: int
    first: int
    lines: list[ShippedLine]
    cursor: str | None = None
    # When the chunk was shipped (Unix time, seconds): by the worker's clock when it writes
    # into Redis itself, by the coordinator's when the lines come through it.
    at: float | None = None

    @property
    def last(self) -> int:
        return self.first + len(self.lines) - 1

    def log_lines(self) -> list[LogLine]:
        """Each line on its own, with its own cursor (to resume right after it)."""
        task, attempt, first = self.task_id, self.attempt, self.first
        return [
            LogLine(task, line.stream, line.text, line_cursor(attempt, first + i), self.at)
            for i, line in enumerate(self.lines)
        ]


class LogBatch(Struct):
    """Lines ``first_line`` … of the attempt the worker holds, in the order produced."""

    attempt: Annotated[int, msgspec.Meta(ge=1)]
    first_line: Annotated[int, msgspec.Meta(ge=1)]
    lines: Annotated[list[ShippedLine], msgspec.Meta(min_length=1, max_length=MAX_LOG_BATCH)]


class RedisShipping(Struct):
    """Where a worker may write its tasks' live logs straight into Redis (FEATURES X5).

    The user is restricted by a Redis ACL to appending to log streams and waking their
    followers; it cannot read anything. A log entry goes to ``key_prefix + task`` as one
    :class:`LogChunk` in field ``d`` with id :func:`line_cursor` of its last line, trimmed to
    ``log_cap`` lines and expiring ``idle_ttl`` s after the last write; a publish on
    ``wake_prefix + task`` wakes the coordinators following it.
    """

    url: str
    username: str
    password: str
    key_prefix: str
    wake_prefix: str
    log_cap: int
    idle_ttl: float


class StreamError(Struct, tag="error", omit_defaults=True):
    """The last item of a stream the coordinator ends: too slow, cursor lost, shutting down."""

    error: str
    message: str
