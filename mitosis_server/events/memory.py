"""The in-process event bus: the embedded default, one coordinator, nothing to run.

Each stream is a fixed-size ring buffer, so memory stays bounded however long the
coordinator runs: the events ring holds ``event_cap`` items, each task log ``log_cap``
lines, and at most ``max_logs`` task logs are kept (the least recently written go first;
ended ones also expire). Cursors are ``<epoch>-<sequence>``; the epoch is random per process,
so a cursor from before a restart is refused instead of pointing at unrelated events.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from mitosis_server.events.base import EVENTS, EventBus, InvalidCursor, check_position

MAX_LOGS = 200


class _Ring:
    """The newest ``cap`` items of a stream; item ``seq`` (from 1) lives at ``(seq-1) % cap``."""

    __slots__ = ("cap", "expires_at", "items", "next")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.items: list[bytes] = []
        self.next = 1
        self.expires_at: float | None = None

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


def _expired(ring: _Ring, now: float) -> bool:
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
        self._logs: OrderedDict[str, _Ring] = OrderedDict()
        self._max_logs = max_logs
        self._clock = clock

    async def start(self) -> None:
        """Nothing to connect to."""

    async def ping(self) -> bool:
        return True

    async def _append(
        self, key: str, items: list[bytes], cap: int, ttl: float | None
    ) -> str | None:
        ring = self._ring(key)
        if ring is None:
            ring = self._logs[key] = _Ring(cap)
        if key != EVENTS:
            self._logs.move_to_end(key)
            self._drop_old_logs()
        for item in items:
            seq = ring.append(item)
        if ttl is not None:
            ring.expires_at = self._clock() + ttl
        return f"{self._epoch}-{seq}"

    async def _range(self, key: str, after: str | None, limit: int) -> list[tuple[str, bytes]]:
        ring = self._ring(key) or _Ring(1)
        seq = 0
        if after is not None:
            seq = self._seq(after)
            check_position(after, (seq, 0), (ring.oldest, 0), (ring.next - 1, 0), ring.trimmed)
        return [(f"{self._epoch}-{s}", item) for s, item in ring.after(seq, limit)]

    async def _latest(self, key: str) -> str:
        ring = self._ring(key)
        return f"{self._epoch}-{ring.next - 1 if ring else 0}"

    async def _send_wake(self, topic: str) -> None:
        """One process: the local wake-up is all there is."""

    async def _send_broadcast(self, topic: str, message: str) -> None:
        """One process: the local listeners are all there are."""

    def _order(self, cursor: str) -> tuple[int, int]:
        return self._seq(cursor), 0

    def _ring(self, key: str) -> _Ring | None:
        if key == EVENTS:
            return self._events
        ring = self._logs.get(key)
        if ring is not None and _expired(ring, self._clock()):
            del self._logs[key]
            return None
        return ring

    def _drop_old_logs(self) -> None:
        now = self._clock()
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
