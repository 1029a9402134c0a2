"""The event bus: capped, resumable streams plus wake-ups and broadcasts between coordinators.

Four uses, all hints on top of the database (correctness never depends on receiving one;
callers poll as a backstop):

* events: committed task and worker changes in one capped stream. Every item read back has
  a cursor; a reader resumes after any cursor it was given, or is told it cannot;
* wake-ups: ``notify(topic)`` wakes waiters on every coordinator, e.g. a worker's long-poll
  on ``dispatch:<group>``;
* logs: one stream per task of :class:`LogChunk` entries, each at the position of its last
  line (``attempt-line``, numbered by the worker), trimmed to the newest ``log_cap`` lines of
  the newest attempt and closed by a :class:`LogEnd` marker that starts its expiry;
* broadcasts: short messages to listeners on every coordinator (auth cache invalidation).

A backend implements a few primitives over named streams and topics (``_append``,
``_append_at``, ``_range``, ``_tail``, ``_latest``, ``_order``, ``_send_wake``,
``_send_broadcast``). Everything above them (encoding, followers, local fan-out; the cursor
rules are in events/cursors.py) lives here once, so the backends cannot drift apart and
one contract suite tests both. Stream keys double as wake-up topics: appending to ``events``
or ``log:<task>`` wakes the followers of that stream.

A wake-up is never missed if the waiter exists before the state is checked::

    with bus.waiter([f"dispatch:{group}" for group in groups]) as waiter:
        while (task := await claim_next_task(...)) is None:
            if not await waiter.wait(remaining):
                break

Errors (both are DomainErrors, so a controller may let them through)::

    DomainError
    ├── InvalidCursor          400: malformed, never issued by this bus, or older than kept
    └── EventBusUnavailable    503: reading needs Redis and Redis is unreachable
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable

import msgspec

from mitosis_sdk.errors import ErrorCode
from mitosis_sdk.schemas.events import Event, LogChunk, LogEnd, ShippedLine, line_cursor
from mitosis_sdk.waiting import wait_event
from mitosis_server.errors import DomainError
from mitosis_server.events.cursors import (
    EVENTS,
    Position,
    lines_after,
    logs_decoder,
    parse_position,
)

log = logging.getLogger(__name__)

EVENT_CAP = 100_000
LOG_CAP = 10_000
LOG_IDLE_TTL = 7 * 86400.0
LOG_END_TTL = 3600.0
MAX_READ = 1000
POLL_INTERVAL = 1.0

_encoder = msgspec.json.Encoder()
_events = msgspec.json.Decoder(Event)


class EventBusUnavailable(DomainError):
    def __init__(self) -> None:
        super().__init__(
            ErrorCode.UNAVAILABLE,
            "the event bus is unreachable; live updates resume when it is back",
        )


def log_key(task_id: str) -> str:
    return f"log:{task_id}"


class Waiter:
    """Interest in wake-up topics, registered on creation, awaited later.

    A notify that arrives before :meth:`wait` is kept, so the pattern is: create the waiter,
    check the state, wait. ``wait`` consumes the wake-up, so one waiter serves a whole loop.
    """

    def __init__(self, registry: dict[str, set[Waiter]], topics: Iterable[str]) -> None:
        self._registry = registry
        self._topics = tuple(dict.fromkeys(topics))
        self._woken = asyncio.Event()
        for topic in self._topics:
            registry.setdefault(topic, set()).add(self)

    def wake(self) -> None:
        self._woken.set()

    # A deadline argument, not asyncio.timeout: the long-poll wants "woken or not" as a bool.
    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109
        """True when woken (now or since the last wait), False after ``timeout`` seconds."""
        if not await wait_event(self._woken, timeout):
            return False
        self._woken.clear()
        return True

    def close(self) -> None:
        for topic in self._topics:
            waiters = self._registry.get(topic)
            if waiters is not None:
                waiters.discard(self)
                if not waiters:
                    del self._registry[topic]

    def __enter__(self) -> Waiter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _topics(topics: str | Iterable[str]) -> Iterable[str]:
    return (topics,) if isinstance(topics, str) else topics


class EventBus(abc.ABC):
    """One per coordinator process; see the module docstring for what it is for."""

    def __init__(
        self,
        *,
        event_cap: int = EVENT_CAP,
        log_cap: int = LOG_CAP,
        log_idle_ttl: float = LOG_IDLE_TTL,
    ) -> None:
        if event_cap < 1 or log_cap < 1:
            raise ValueError("event_cap and log_cap must be at least 1")
        self.event_cap = event_cap
        self.log_cap = log_cap
        self.log_idle_ttl = log_idle_ttl
        self._waiters: dict[str, set[Waiter]] = {}
        self._listeners: dict[str, list[Callable[[str], object]]] = {}
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect; an unreachable backend is logged, not raised, and recovered from later."""

    async def close(self) -> None:
        """Stop followers and release every waiter (they re-check and see the shutdown)."""
        self._closed = True
        self._wake_all()

    @abc.abstractmethod
    async def ping(self) -> bool:
        """True when the backend answers (for readiness checks)."""

    # -- events --------------------------------------------------------------------------

    async def publish(self, *events: Event) -> str | None:
        """Append committed changes in order; the cursor of the last, or None if not stored."""
        if not events:
            return None
        return await self._store(EVENTS, [_encoder.encode(e) for e in events], self.event_cap)

    async def read_events(self, after: str | None = None, limit: int = MAX_READ) -> list[Event]:
        """Up to ``limit`` events after ``after`` (None: from the oldest kept)."""
        events, _, _ = await self._read(EVENTS, after, limit, _events)
        return events

    async def latest_cursor(self) -> str:
        """The cursor to follow "from now": everything published later comes after it."""
        return await self._latest(EVENTS)

    async def tail_events(self, after: str, timeout: float) -> tuple[list[Event], str]:  # noqa: ASYNC109
        """The next events after ``after`` as soon as there are any (at most ``MAX_READ``),
        or none after ``timeout`` seconds; with the cursor to read on from.

        The shared reader's primitive (events/fanout.py): one waiting read, no cursor checks
        (it only ever passes cursors the bus gave it). Malformed entries are skipped.
        """
        entries = await self._tail(EVENTS, after, MAX_READ, timeout)
        return self._decoded(EVENTS, entries, _events), entries[-1][0] if entries else after

    def order(self, cursor: str) -> Position:
        """A cursor's position, to compare two cursors of this bus; InvalidCursor if malformed."""
        return self._order(cursor)

    async def subscribe(self, after: str | None = None) -> AsyncIterator[Event]:
        """The backlog after ``after``, then live events, with no gap and no duplicate.

        Runs until the bus closes; use ``contextlib.aclosing`` to stop earlier. Raises
        InvalidCursor if the subscriber falls further behind than the stream keeps.
        """
        async with contextlib.aclosing(self._follow(EVENTS, after, _events)) as events:
            async for event in events:
                yield event

    # -- wake-ups ------------------------------------------------------------------------

    async def notify(self, topic: str) -> None:
        """Wake every waiter on ``topic`` in every process; never raises for an outage."""
        self._wake_local(topic)
        await self._send_wake(topic)

    def waiter(self, topics: str | Iterable[str]) -> Waiter:
        """Register now, wait later (see the module docstring)."""
        return Waiter(self._waiters, _topics(topics))

    async def wait(self, topics: str | Iterable[str], timeout: float) -> bool:  # noqa: ASYNC109
        """True when a topic is notified within ``timeout`` seconds."""
        with self.waiter(topics) as waiter:
            return await waiter.wait(timeout)

    # -- per-task logs -------------------------------------------------------------------

    async def append_log(
        self, task_id: str, attempt: int, first: int, lines: list[ShippedLine]
    ) -> str | None:
        """Store lines ``first`` … of ``attempt`` as one entry; the cursor of the last line, or
        None if not stored: the bus is down, or they are not after the newest line kept (a
        batch shipped twice, or by an attempt a newer one has superseded)."""
        if not lines:
            return None
        last = first + len(lines) - 1
        key = log_key(task_id)
        chunk = LogChunk(task_id=task_id, attempt=attempt, first=first, lines=lines, at=time.time())
        keep_from = (attempt, max(0, last - self.log_cap + 1))
        stored = await self._append_at(
            key, (attempt, last), _encoder.encode(chunk), keep_from, self.log_idle_ttl
        )
        if not stored:
            return None
        self._wake_local(key)
        return line_cursor(attempt, last)

    async def end_log(self, task_id: str, ttl: float = LOG_END_TTL) -> str | None:
        """Mark the log complete (followers get a LogEnd and stop); drop it ``ttl`` s later.
        The marker goes after every line, so nothing can be appended after it."""
        item = _encoder.encode(LogEnd(task_id=task_id))
        return await self._store(log_key(task_id), [item], self.log_cap, ttl)

    async def read_log(
        self, task_id: str, after: str | None = None, limit: int = MAX_READ
    ) -> list[LogChunk | LogEnd]:
        """Up to ``limit`` chunks holding the lines after ``after`` (None: every kept line)."""
        start = None if after is None else parse_position(after)
        chunks, _, _ = await self._read(log_key(task_id), after, limit, logs_decoder)
        return lines_after(chunks, start)

    async def follow_log(
        self, task_id: str, after: str | None = None
    ) -> AsyncIterator[LogChunk | LogEnd]:
        """The backlog, then live chunks, ending after the LogEnd marker (or when closed)."""
        start = None if after is None else parse_position(after)
        async with contextlib.aclosing(
            self._follow(log_key(task_id), after, logs_decoder)
        ) as chunks:
            async for chunk in chunks:
                if start is not None:
                    (trimmed,) = lines_after([chunk], start) or [None]
                    start = None
                    if trimmed is None:
                        continue
                    chunk = trimmed
                yield chunk
                if isinstance(chunk, LogEnd):
                    return

    # -- broadcasts ----------------------------------------------------------------------

    async def broadcast(self, topic: str, message: str, *, here: bool = True) -> None:
        """Call every listener of ``topic`` in every process (this one too unless ``here`` is
        False: a caller that already acted locally)."""
        if here:
            self._deliver(topic, message)
        await self._send_broadcast(topic, message)

    def listen(self, topic: str, callback: Callable[[str], object]) -> Callable[[], None]:
        """Call ``callback(message)`` for each broadcast on ``topic``; returns the unsubscribe."""
        self._listeners.setdefault(topic, []).append(callback)

        def stop() -> None:
            callbacks = self._listeners.get(topic, [])
            if callback in callbacks:
                callbacks.remove(callback)

        return stop

    # -- what a backend provides ---------------------------------------------------------

    @abc.abstractmethod
    async def _append(
        self, key: str, items: list[bytes], cap: int, ttl: float | None
    ) -> str | None:
        """Append in order keeping at least the newest ``cap``; wake ``key``'s followers in
        other processes; (re)set the expiry when ``ttl`` is given. None if not stored."""

    @abc.abstractmethod
    async def _append_at(
        self, key: str, position: Position, item: bytes, keep_from: Position, ttl: float
    ) -> bool:
        """Append ``item`` at ``position`` if it is after the newest entry (else False), drop
        the entries before ``keep_from``, (re)set the expiry and wake ``key``'s followers in
        other processes. False too if not stored (the bus is down)."""

    @abc.abstractmethod
    async def _range(self, key: str, after: str | None, limit: int) -> list[tuple[str, bytes]]:
        """(cursor, item) after ``after``, oldest first; InvalidCursor, EventBusUnavailable."""

    @abc.abstractmethod
    async def _latest(self, key: str) -> str:
        """The cursor of the newest item ever added to ``key`` (a zero cursor if none)."""

    @abc.abstractmethod
    async def _send_wake(self, topic: str) -> None:
        """Wake ``topic`` in the other processes; log, never raise, on failure."""

    @abc.abstractmethod
    async def _send_broadcast(self, topic: str, message: str) -> None:
        """Deliver to the other processes' listeners; log, never raise, on failure."""

    @abc.abstractmethod
    def _order(self, cursor: str) -> Position:
        """The position of one of this bus's cursors; InvalidCursor if it is not one."""

    async def _tail(
        self,
        key: str,
        after: str,
        limit: int,
        timeout: float,  # noqa: ASYNC109
    ) -> list[tuple[str, bytes]]:
        """(cursor, item) after ``after``, waiting up to ``timeout`` s for the first one. This
        default waits on the local wake-up; a backend with a blocking read overrides it."""
        with self.waiter(key) as waiter:
            entries = await self._range(key, after, limit)
            if entries or self._closed or not await waiter.wait(timeout):
                return entries
            return await self._range(key, after, limit)

    # -- shared machinery ----------------------------------------------------------------

    async def _store(
        self, key: str, items: list[bytes], cap: int, ttl: float | None = None
    ) -> str | None:
        cursor = await self._append(key, items, cap, ttl)
        self._wake_local(key)
        return cursor

    async def _read(
        self, key: str, after: str | None, limit: int, decoder: msgspec.json.Decoder
    ) -> tuple[list, str | None, int]:
        """Decoded items, the cursor to read on from, and how many entries were read."""
        entries = await self._range(key, after, max(1, min(limit, MAX_READ)))
        items = self._decoded(key, entries, decoder)
        return items, (entries[-1][0] if entries else after), len(entries)

    @staticmethod
    def _decoded(key: str, entries: list[tuple[str, bytes]], decoder: msgspec.json.Decoder) -> list:
        """Each entry decoded once, with its cursor; a malformed one is logged and skipped."""
        items = []
        for cursor, data in entries:
            try:
                item = decoder.decode(data)
            except msgspec.DecodeError as exc:
                log.warning("events.malformed_entry key=%s cursor=%s error=%s", key, cursor, exc)
                continue
            item.cursor = cursor
            items.append(item)
        return items

    async def _follow(
        self, key: str, after: str | None, decoder: msgspec.json.Decoder
    ) -> AsyncIterator:
        # The waiter exists before each read, so an append between the read and the wait
        # wakes it; the poll interval covers wake-ups lost to a pub/sub outage.
        with self.waiter(key) as waiter:
            while not self._closed:
                try:
                    items, after, count = await self._read(key, after, MAX_READ, decoder)
                except EventBusUnavailable:
                    await waiter.wait(POLL_INTERVAL)
                    continue
                for item in items:
                    yield item
                if count < MAX_READ:
                    await waiter.wait(POLL_INTERVAL)

    def _wake_local(self, topic: str) -> None:
        for waiter in self._waiters.get(topic, ()):
            waiter.wake()

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.wake()

    def _deliver(self, topic: str, message: str) -> None:
        for callback in list(self._listeners.get(topic, ())):
            try:
                callback(message)
            except Exception:
                log.exception("events.listener_failed topic=%s", topic)
