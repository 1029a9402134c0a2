"""What the live stream carries: state-change events, log lines and the end-of-log marker.

The coordinator publishes these on its event bus and forwards them, filtered by group, over
the one authenticated stream clients follow (FEATURES E1-E3, X5). Each type is tagged
(``"type": "event" | "log" | "log.end"``) so a client decodes a mixed stream with one
``msgspec.json.Decoder(Event | LogLine | LogEnd)``. ``cursor`` is filled in by the bus when an
item is read back: an opaque, ordered position a client hands back to resume without a gap.
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


class LogLine(Struct, tag="log", omit_defaults=True):
    """One output line; ``at`` is when the coordinator received it (Unix time, seconds)."""

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


class ShippedLine(Struct):
    """One output line as a worker ships it (the coordinator adds the task id)."""

    stream: LogStream
    text: Annotated[str, msgspec.Meta(max_length=MAX_LOG_LINE)]


class LogBatch(Struct):
    """Lines of the attempt the worker holds, in the order they were produced."""

    attempt: Annotated[int, msgspec.Meta(ge=1)]
    lines: Annotated[list[ShippedLine], msgspec.Meta(max_length=MAX_LOG_BATCH)]


class StreamError(Struct, tag="error", omit_defaults=True):
    """The last item of a stream the coordinator ends: too slow, cursor lost, shutting down."""

    error: str
    message: str
