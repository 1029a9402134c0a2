"""Positions in the bus's streams: parsing, checking and cutting at a cursor.

Every stream is ordered by a pair of integers: Redis entry ids (``<ms>-<seq>``), the memory
backend's ``(sequence, 0)``, and log lines' ``(attempt, line)`` on both. A reader resumes
after a cursor when nothing after it was dropped; :func:`check_position` refuses one that
would silently miss something, :func:`floor_of` says where that limit lies when the oldest
kept entry is a log chunk (which holds lines up to its own position), and
:func:`lines_after` cuts such a chunk at a cursor that points into it.
"""

from __future__ import annotations

import msgspec

from mitosis_sdk.errors import ErrorCode
from mitosis_sdk.schemas.events import LogChunk, LogEnd
from mitosis_server.errors import DomainError

EVENTS = "events"

Position = tuple[int, int]

logs_decoder = msgspec.json.Decoder(LogChunk | LogEnd)


class InvalidCursor(DomainError):
    """The reader cannot resume here; it restarts from the oldest kept item or from now."""

    def __init__(self, cursor: str, problem: str) -> None:
        super().__init__(
            ErrorCode.INVALID_INPUT,
            f"cursor {cursor[:64]!r} {problem}; resume from the oldest kept item (no cursor)"
            " or from now",
            {"field": "cursor"},
        )


def check_position(cursor: str, position: Position, floor: Position, latest: Position) -> None:
    """Refuse a cursor past the newest item ever added, or below ``floor``, the oldest
    position a reader can go on from without missing what was dropped."""
    if position > latest:
        raise InvalidCursor(cursor, "is unknown here (the stream was reset or expired)")
    if position < floor:
        raise InvalidCursor(cursor, "is older than the oldest kept item")


def floor_of(key: str, position: Position, data: bytes) -> Position:
    """The oldest position a reader may resume from when the entry at ``position`` is the
    oldest kept: for an event, its own (the one before is unknown); for a log chunk, the
    line before its first line."""
    if key == EVENTS:
        return position
    try:
        item = logs_decoder.decode(data)
    except msgspec.DecodeError:
        return position
    return (item.attempt, item.first - 1) if isinstance(item, LogChunk) else position


def cursor_of(position: Position) -> str:
    return f"{position[0]}-{position[1]}"


def parse_position(cursor: str | bytes) -> Position:
    """``<int>-<int>`` (Redis entry ids, log line positions) as a comparable pair."""
    text = cursor.decode() if isinstance(cursor, bytes) else cursor
    major, sep, minor = text.partition("-")
    if not (sep and major.isascii() and major.isdigit() and minor.isascii() and minor.isdigit()):
        raise InvalidCursor(text, "is not a cursor of this event bus")
    return int(major), int(minor)


def lines_after(chunks: list, start: Position | None) -> list:
    """Cut the lines at or before ``start`` off the first chunk (an entry holds its lines up
    to its position, so the first one read after a mid-chunk cursor starts too early)."""
    if start is None or not chunks or not isinstance(chunks[0], LogChunk):
        return chunks
    first = chunks[0]
    attempt, line = start
    if first.attempt != attempt or first.first > line:
        return chunks
    first.lines = first.lines[line - first.first + 1 :]
    first.first = line + 1
    return chunks if first.lines else chunks[1:]
