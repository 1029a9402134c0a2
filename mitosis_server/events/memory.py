"""The in-process event bus: the embedded default, one coordinator, nothing to run.

Memory stays bounded however long the coordinator runs: the events ring holds
``event_cap`` items; a task log keeps the chunks holding its newest ``log_cap`` lines (like
the Redis backend's ``MINID`` trimming), and at most ``max_logs`` task logs are kept (the
least recently written go first; ended ones also expire). Event cursors are
``<epoch>-<sequence>``; the epoch is random per process, so a cursor from before a restart is
refused instead of pointing at unrelated events. Log cursors are line positions
(``attempt-line``) as on Redis; the end marker sits at ``END-<n>``, after every line.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from mitosis_server.events.base import EventBus
from mitosis_server.events.cursors import (
    EVENTS,
    InvalidCursor,
    Position,
    check_position,
    cursor_of,
    parse_position,
)

MAX_LOGS = 200
SWEEP_EVERY = 1.0  # seconds between sweeps for expired logs


class _Ring:
    """The newest ``cap`` items of a stream; item ``seq`` (from 1) lives at ``(seq-1) % cap``."""

    __slots__ = ("cap", "items", "next")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.items: list[bytes] = []
        self.next = 1

    @property
    def oldest(self) -> int:
        return max(1, self.next - self.cap)

    @property
    def trimmed(self) -> bool:
        return self.next - 1 > self.cap

    def append(self, item: bytes) -> int:
        seq = self.next
        if len(self.items) < self.cap:
            self.items.append(item)
        else:
            self.items[(seq - 1) % self.cap] = item
        self.next += 1
        return seq

    def after(self, seq: int, limit: int) -> list[tuple[int, bytes]]:
        start = max(seq + 1, self.oldest)
        stop = min(self.next, start + limit)
        return [(s, self.items[(s - 1) % self.cap]) for s in range(start, stop)]


END = 1 << 62  # the end marker's major position: after every attempt


class _Log:
    """A task log's entries by position, oldest first, and the newest position dropped."""

    __slots__ = ("entries", "expires_at", "max_deleted")

    def __init__(self) -> None:
        self.entries: collections.deque[tuple[Position, bytes]] = collections.deque()
        self.max_deleted: Position = (0, 0)
        self.expires_at: float | None = None

    @property
    def latest(self) -> Position:
        return self.entries[-1][0] if self.entries else self.max_deleted

    def add(self, position: Position, item: bytes, keep_from: Position) -> bool:
        if position <= self.latest:
            return False
        self.entries.append((position, item))
        while self.entries and self.entries[0][0] < keep_from:
            self.max_deleted = self.entries.popleft()[0]
        return True

    def after(self, position: Position, limit: int) -> list[tuple[Position, bytes]]:
        start = bisect.bisect_right(self.entries, position, key=lambda entry: entry[0])
        return list(itertools.islice(self.entries, start, start + limit))


def _expired(ring: _Log, now: float) -> bool:
    return ring.expires_at is not None and ring.expires_at <= now


class MemoryEventBus(EventBus):
    def __init__(
        self,
        *,
        max_logs: int = MAX_LOGS,
        clock: Callable[[], float] = time.monotonic,
        **limits: Any,
    ) -> None:
        super().__init__(**limits)
        self._epoch = secrets.token_hex(4)
        self._events = _Ring(self.event_cap)
        self._logs: OrderedDict[str, _Log] = OrderedDict()
        self._max_logs = max_logs
        self._clock = clock
        self._next_sweep = 0.0

    async def start(self) -> None:
        """Nothing to connect to."""

    async def ping(self) -> bool:
        return True

    async def _append(
        self, key: str, items: list[bytes], cap: int, ttl: float | None
    ) -> str | None:
        if key == EVENTS:
            for item in items:
                seq = self._events.append(item)
            return f"{self._epoch}-{seq}"
        log = self._log(key, create=True)
        for item in items:  # only end markers come this way: they go after every line
            latest = log.latest
            position = (END, latest[1] + 1 if latest[0] == END else 1)
            log.add(position, item, (0, 0))
        if ttl is not None:
            log.expires_at = self._clock() + ttl
        return cursor_of(position)

    async def _append_at(
        self, key: str, position: Position, item: bytes, keep_from: Position, ttl: float
    ) -> bool:
        log = self._log(key, create=True)
        if not log.add(position, item, keep_from):
            return False
        log.expires_at = self._clock() + ttl
        return True

    async def _range(self, key: str, after: str | None, limit: int) -> list[tuple[str, bytes]]:
        if key == EVENTS:
            ring, seq = self._events, 0
            if after is not None:
                seq = self._seq(after)
                deleted = (ring.oldest - 1 if ring.trimmed else 0, 0)
                check_position(after, (seq, 0), deleted, (ring.next - 1, 0))
            return [(f"{self._epoch}-{s}", item) for s, item in ring.after(seq, limit)]
        log, position = self._log(key) or _Log(), (0, 0)
        if after is not None:
            position = parse_position(after)
            check_position(after, position, log.max_deleted, log.latest)
        return [(cursor_of(at), item) for at, item in log.after(position, limit)]

    async def _latest(self, key: str) -> str:
        if key == EVENTS:
            return f"{self._epoch}-{self._events.next - 1}"
        log = self._log(key)
        return cursor_of(log.latest if log else (0, 0))

    async def _send_wake(self, topic: str) -> None:
        """One process: the local wake-up is all there is."""

    async def _send_broadcast(self, topic: str, message: str) -> None:
        """One process: the local listeners are all there are."""

    def _order(self, cursor: str) -> tuple[int, int]:
        return self._seq(cursor), 0

    def _log(self, key: str, create: bool = False) -> _Log | None:
        log = self._logs.get(key)
        if log is not None and _expired(log, self._clock()):
            del self._logs[key]
            log = None
        if create:
            if log is None:
                log = self._logs[key] = _Log()
            self._logs.move_to_end(key)
            self._drop_old_logs()
        return log

    def _drop_old_logs(self) -> None:
        """Expired logs go at most once a second (a sweep reads every log, and every task's
        end writes one); a read never sees one anyway (``_log``). The count bound holds at
        every write."""
        now = self._clock()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_EVERY
            for key in [k for k, r in self._logs.items() if _expired(r, now)]:
                del self._logs[key]
        while len(self._logs) > self._max_logs:
            self._logs.popitem(last=False)

    def _seq(self, cursor: str) -> int:
        epoch, _, seq = cursor.partition("-")
        if not (seq.isascii() and seq.isdigit()):
            raise InvalidCursor(cursor, "is not a cursor of this event bus")
        if epoch != self._epoch:
            raise InvalidCursor(cursor, "is unknown here (the coordinator restarted)")
        return int(seq)
