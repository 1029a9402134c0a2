"""One shared reader of the event stream per coordinator, fanned out to every open stream.

Reading and decoding the stream once per connection made the coordinator's work grow with
connections times events (issue 7: 100 clients at 1,000 events/s got almost nothing). Here
one task follows the bus (a blocking ``XREAD`` on Redis, the local wake-up in-process),
decodes each event once, frames it once (``frame``: the SSE bytes, supplied by the API) and
matches it once against the group filters of the open subscriptions. Subscriptions with the
same filter share a *channel*, so a batch costs one ``b"".join`` per channel, not per client.

Each :class:`Subscription` holds a bounded queue of ready-to-send chunks. A client that does
not drain its queue in time is dropped: its queue is replaced by one final item (``too
slow``: the SDK reconnects from its last cursor), so it never slows the reader or the others.

Resuming from a cursor without a gap or a duplicate: a new subscription first reads the
backlog after its cursor itself (``read_events``), then joins the live fan-out in the same
synchronous step in which it sees it has reached the reader's position, skipping what it
already read. Reader and subscribers only ever compare positions of one bus (``bus.order``).

If the bus is unreachable the reader logs once, retries with backoff and carries on from
where it was; open streams stay open (with keep-alives) meanwhile.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Callable

from mitosis_sdk.schemas.events import Event
from mitosis_sdk.waiting import wait_event
from mitosis_server.events.base import EventBus, EventBusUnavailable
from mitosis_server.events.cursors import InvalidCursor, Position

log = logging.getLogger(__name__)

BLOCK = 1.0  # seconds one read waits for new events (then looks at its stop flag)
RETRY_MIN = 0.1
RETRY_MAX = 5.0
QUEUE_EVENTS = 5000  # events a subscription may have waiting before it is dropped
QUEUE_BYTES = 8 * 2**20

Frame = Callable[[Event], bytes]
Groups = frozenset[str] | None  # None: every group (Mitosis admins)


class Subscription:
    """One open stream's queue of framed chunks, fed by the shared reader."""

    def __init__(self, fanout: EventFanout, groups: Groups) -> None:
        self.groups = groups
        self._fanout = fanout
        self._chunks: collections.deque[bytes] = collections.deque()
        self._events = 0
        self._bytes = 0
        self._ready = asyncio.Event()
        self._final: bytes | None = None
        self.skip_until: Position | None = None  # live events at or before this were read
        self.backlog: AsyncIterator[bytes] | None = None  # the catch-up, until it joins

    @property
    def ended(self) -> bool:
        return self._final is not None

    def push(self, chunk: bytes, count: int) -> None:
        if self._final is not None:
            return
        # One read's batch always fits an empty queue; a client is slow when it has not
        # taken what came before.
        over = self._events + count > QUEUE_EVENTS or self._bytes + len(chunk) > QUEUE_BYTES
        if self._events and over:
            log.warning("stream.dropped_slow_client queued=%d", self._events)
            self.end(self._fanout.too_slow)
            return
        self._chunks.append(chunk)
        self._events += count
        self._bytes += len(chunk)
        self._ready.set()

    def end(self, final: bytes) -> None:
        """Stop now: what is queued is dropped, ``final`` is the last thing sent."""
        if self._final is None:
            self._final = final
            self._chunks.clear()
            self._events = self._bytes = 0
            self._fanout.forget(self)
            self._ready.set()

    async def take(self, timeout: float) -> tuple[bytes, bool]:  # noqa: ASYNC109
        """The next chunk to send: a page of the backlog while catching up, then everything
        queued at once (empty after ``timeout`` s with nothing new); and whether the stream
        ends with it. InvalidCursor or EventBusUnavailable while catching up are raised."""
        if self.backlog is not None and self._final is None:
            try:
                return await anext(self.backlog), False
            except StopAsyncIteration:
                self.backlog = None
        if not self._chunks and self._final is None:
            await wait_event(self._ready, timeout)
        self._ready.clear()
        if self._final is not None:
            return self._final, True
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._events = self._bytes = 0
        return data, False

    async def close(self) -> None:
        if self.backlog is not None:
            await self.backlog.aclose()
        self._fanout.forget(self)


class _Channel:
    """Subscriptions sharing one group filter, and what this batch holds for them."""

    __slots__ = ("batch", "groups", "members")

    def __init__(self, groups: Groups) -> None:
        self.groups = groups
        self.members: set[Subscription] = set()
        self.batch: list[tuple[Event, bytes]] = []


class EventFanout:
    def __init__(self, bus: EventBus, frame: Frame, too_slow: bytes) -> None:
        self.bus = bus
        self.frame = frame
        self.too_slow = too_slow
        self.position: str | None = None  # cursor of the last event handed out
        self._channels: dict[Groups, _Channel] = {}
        self._by_group: dict[str, list[_Channel]] = {}
        self._started = asyncio.Event()
        self._reader: asyncio.Task | None = None
        self._closing = False

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._read(), name="event-fanout")

    async def close(self, final: bytes) -> None:
        """Stop reading and end every open stream with ``final``."""
        self._closing = True
        if self._reader is not None:
            # The flag too: a client library may turn the cancellation of a blocking read
            # into a connection error, which the loop would otherwise retry.
            self._reader.cancel()
            await asyncio.wait([self._reader], timeout=2 * BLOCK)
        self.end_all(final)

    def end_all(self, final: bytes) -> None:
        for channel in list(self._channels.values()):
            for member in list(channel.members):
                member.end(final)

    @property
    def subscribers(self) -> int:
        return sum(len(c.members) for c in self._channels.values())

    # -- subscribing ---------------------------------------------------------------------

    def open(self, groups: Groups, after: str) -> Subscription:
        """A subscription to the events after ``after`` matching ``groups``: the backlog
        first, then live; ``close`` it when done."""
        subscription = Subscription(self, groups)
        subscription.backlog = self._catch_up(subscription, after)
        return subscription

    async def _catch_up(self, subscription: Subscription, after: str) -> AsyncIterator[bytes]:
        """Read after ``after`` until level with the reader, then join it (no await between
        the check and the join, so no event can fall between the two)."""
        position = self.bus.order(after)
        while not subscription.ended:
            if self.position is None:
                await self._started.wait()
                continue
            if position >= self.bus.order(self.position):
                self._join(subscription, position)
                return
            events = await self.bus.read_events(after)
            if not events:
                self._join(subscription, position)
                return
            after, position = events[-1].cursor, self.bus.order(events[-1].cursor)
            chunk = b"".join(self.frame(e) for e in events if _matches(e, subscription.groups))
            if chunk:
                yield chunk

    def _join(self, subscription: Subscription, position: Position) -> None:
        subscription.skip_until = position
        channel = self._channels.get(subscription.groups)
        if channel is None:
            channel = self._channels[subscription.groups] = _Channel(subscription.groups)
            for group in subscription.groups or ():
                self._by_group.setdefault(group, []).append(channel)
        channel.members.add(subscription)

    def forget(self, subscription: Subscription) -> None:
        channel = self._channels.get(subscription.groups)
        if channel is None or subscription not in channel.members:
            return
        channel.members.discard(subscription)
        if not channel.members:
            del self._channels[subscription.groups]
            for group in subscription.groups or ():
                channels = self._by_group[group]
                channels.remove(channel)
                if not channels:
                    del self._by_group[group]

    # -- the reader ----------------------------------------------------------------------

    async def _read(self) -> None:
        delay = RETRY_MIN
        while not self._closing:
            try:
                if self.position is None:
                    self.position = await self.bus.latest_cursor()
                    self._started.set()
                events, self.position = await self.bus.tail_events(self.position, BLOCK)
                delay = RETRY_MIN
            except EventBusUnavailable:
                await asyncio.sleep(delay)  # the bus has logged the outage once
                delay = min(2 * delay, RETRY_MAX)
                continue
            except InvalidCursor as exc:  # the stream was reset under us: start over
                log.warning("stream.reader_reset error=%s", exc.message)
                self.position = None
                self._started.clear()
                self.end_all(self.too_slow)
                continue
            if events:
                self._dispatch(events)

    def _dispatch(self, events: list[Event]) -> None:
        """Frame and match each event once; one chunk per channel, pushed to its members."""
        everyone = self._channels.get(None)
        touched: dict[int, _Channel] = {}
        for event in events:
            framed = (event, self.frame(event))
            if everyone is not None:
                everyone.batch.append(framed)
                touched[id(everyone)] = everyone
            for group in event.groups:
                for channel in self._by_group.get(group, ()):
                    if channel.batch and channel.batch[-1][0] is event:
                        continue  # the event names two groups of this channel
                    channel.batch.append(framed)
                    touched[id(channel)] = channel
        for channel in touched.values():
            batch, channel.batch = channel.batch, []
            chunk = b"".join(frame for _, frame in batch)
            for member in list(channel.members):
                if member.skip_until is None:
                    member.push(chunk, len(batch))
                else:
                    self._push_after(member, batch)

    def _push_after(self, member: Subscription, batch: list[tuple[Event, bytes]]) -> None:
        """A member that joined ahead of the reader skips what its own catch-up read."""
        assert member.skip_until is not None
        fresh = [(e, f) for e, f in batch if self.bus.order(e.cursor) > member.skip_until]
        if len(fresh) == len(batch):
            member.skip_until = None
        if fresh:
            member.push(b"".join(f for _, f in fresh), len(fresh))


def _matches(event: Event, groups: Groups) -> bool:
    return groups is None or not groups.isdisjoint(event.groups)
