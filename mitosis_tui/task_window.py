"""The rows of one task query, held a chunk at a time around what is on screen.

A group may hold 100,000 tasks; the Tasks pane never loads them. The coordinator counts them
(``total``) and serves pages; this model keeps at most ``KEEP`` chunks of ``CHUNK`` rows near
the viewport and says which chunks the viewport still needs. A chunk that directly follows
a fresh one is asked for with that chunk's cursor (the coordinator's stable keyset paging),
any other by offset (a jump with End or the scroll bar) — and a chunk in the far half of the
query by offset from the other end, in reverse order, so the coordinator never skips more
than half of the rows (an ``OFFSET`` costs what it skips).

Live updates: an event patches the row it names at once (state, phase, exit code…); then
every held chunk is marked stale and the visible ones are read again, so rows that entered
or left the query (a new submission, a state filter) appear where the coordinator puts them.
A stale chunk keeps showing its rows until the fresh page replaces it: no flicker.

Each :meth:`reset` (another filter, sort or group) starts a new ``generation``; pages that
arrive for an older one are dropped. Plain Python, no Textual: the pane drives it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import msgspec

from mitosis_sdk.schemas import TaskInfo, TaskPage, TaskPhase, TaskReason, TaskState

__all__ = ["CHUNK", "KEEP", "TaskWindow"]

CHUNK = 100
KEEP = 12  # chunks held at most (1,200 rows), the ones nearest the viewport


@dataclass
class _Chunk:
    rows: list[TaskInfo]
    next_cursor: str | None
    fresh: bool = True


def _patched(task: TaskInfo, payload: dict[str, Any]) -> TaskInfo:
    """The row as the event says it is now (fields the event does not carry stay)."""
    changes: dict[str, Any] = {}
    if "state" in payload:
        changes["state"] = TaskState(payload["state"])
    if "phase" in payload:
        changes["phase"] = TaskPhase(payload["phase"]) if payload["phase"] else None
    if "attempt" in payload:
        changes["attempt"] = payload["attempt"]
    if "exit_code" in payload:
        changes["exit_code"] = payload["exit_code"]
    if "reason" in payload:
        changes["reason"] = TaskReason(payload["reason"]) if payload["reason"] else None
    if payload.get("worker"):
        changes["worker"] = uuid.UUID(payload["worker"])
    return msgspec.structs.replace(task, **changes) if changes else task


class TaskWindow:
    def __init__(self) -> None:
        self.generation = 0
        self.total: int | None = None  # None: not counted yet
        self._chunks: dict[int, _Chunk] = {}
        self._index: dict[uuid.UUID, int] = {}  # held rows by task, rebuilt on each store
        self._counted = False  # total is from a page read since the last mark_stale

    # -- reading -------------------------------------------------------------------------

    def row(self, index: int) -> TaskInfo | None:
        chunk = self._chunks.get(index // CHUNK)
        if chunk is None or index % CHUNK >= len(chunk.rows):
            return None
        return chunk.rows[index % CHUNK]

    def locate(self, task: uuid.UUID) -> int | None:
        """Where a held row is (None: not held)."""
        return self._index.get(task)

    @property
    def held_rows(self) -> int:
        return sum(len(chunk.rows) for chunk in self._chunks.values())

    # -- what to fetch -------------------------------------------------------------------

    def wanted(self, first: int, last: int) -> list[int]:
        """Chunks to fetch for rows ``first..last`` (inclusive): the visible ones that are
        missing or stale first, then the missing neighbours (read ahead: one before, two
        after, so paging down seldom waits for the coordinator)."""
        if self.total is None or (self.total == 0 and not self._counted):
            return [max(first, 0) // CHUNK]
        if self.total == 0:
            return []
        last = min(last, self.total - 1)
        first = max(0, min(first, last))
        visible = range(first // CHUNK, last // CHUNK + 1)
        needed = [n for n in visible if n not in self._chunks or not self._chunks[n].fresh]
        ahead = [visible.stop, visible.start - 1, visible.stop + 1]
        needed += [n for n in ahead if 0 <= n * CHUNK < self.total and n not in self._chunks]
        return needed

    def page_request(self, number: int) -> dict[str, Any]:
        """How to read chunk ``number``: ``cursor``/``offset``/``limit`` of the query, and
        ``reverse`` when it is read in the opposite order (the far half of a long query,
        so the coordinator never skips more than half the rows)."""
        before = self._chunks.get(number - 1)
        if before is not None and before.fresh and before.next_cursor:
            return {"cursor": before.next_cursor, "offset": 0, "limit": CHUNK, "reverse": False}
        start = number * CHUNK
        if self.total is not None and start > self.total // 2:
            end = min(start + CHUNK, self.total)
            return {
                "cursor": None,
                "offset": self.total - end,
                "limit": end - start,
                "reverse": True,
            }
        return {"cursor": None, "offset": start, "limit": CHUNK, "reverse": False}

    # -- changes -------------------------------------------------------------------------

    def reset(self) -> int:
        """Forget everything (the query changed); the new generation number."""
        self.generation += 1
        self.total, self._counted = None, False
        self._chunks.clear()
        self._index.clear()
        return self.generation

    def store(self, number: int, page: TaskPage, generation: int, reverse: bool = False) -> bool:
        """Keep a page read for chunk ``number`` (``reverse``: read in the opposite order);
        False when it belongs to an older query."""
        if generation != self.generation:
            return False
        self.total, self._counted = page.total, True
        if reverse:  # its cursor continues the other way: of no use going forwards
            self._chunks[number] = _Chunk(page.tasks[::-1], None)
        else:
            self._chunks[number] = _Chunk(page.tasks, page.next_cursor)
        limit = (page.total + CHUNK - 1) // CHUNK
        for beyond in [n for n in self._chunks if n >= limit]:
            del self._chunks[beyond]
        if len(self._chunks) > KEEP:
            by_distance = sorted(self._chunks, key=lambda n: abs(n - number))
            for far in by_distance[KEEP:]:
                del self._chunks[far]
        self._index = {
            row.uuid: n * CHUNK + i
            for n, chunk in sorted(self._chunks.items())
            for i, row in enumerate(chunk.rows)
        }
        return True

    def mark_stale(self) -> None:
        """Every held chunk (and the total) is to be read again when next visible."""
        self._counted = False
        for chunk in self._chunks.values():
            chunk.fresh = False

    def patch(self, task: uuid.UUID, payload: dict[str, Any]) -> int | None:
        """Apply an event's payload to the held row of ``task``; its index, or None."""
        index = self._index.get(task)
        if index is not None:
            rows = self._chunks[index // CHUNK].rows
            rows[index % CHUNK] = _patched(rows[index % CHUNK], payload)
        return index
