"""The shared event reader (events/fanout.py) over both bus backends: one read, many streams.

Subscriptions are read directly (no HTTP): each chunk is the concatenation of the frames of
the events it carries, and the frame used here is ``<n>;`` so a chunk reads as a list of
event numbers. The SSE shape and the revocations are proven over HTTP in tests/e2e.
"""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from mitosis_sdk.schemas.events import Event, EventKind
from mitosis_server.events import EventFanout, create_event_bus, fanout
from tests.integration.test_event_bus_contract import (  # noqa: F401 (fixtures)
    REDIS_URL,
    open_buses,
    redis_prefix,
)

pytestmark = pytest.mark.timeout(30)

SLOW = b"slow;"
BYE = b"bye;"


def event(n: int, *groups: str) -> Event:
    return Event(
        kind=EventKind.TASK_STATE, groups=list(groups), object_id=f"t{n}", payload={"n": n}
    )


def frame(e: Event) -> bytes:
    return f"{e.payload['n']};".encode()


def numbers(data: bytes) -> list[int]:
    return [int(x) for x in data.decode().split(";") if x.isdigit()]


@pytest.fixture
async def hub(open_buses):  # noqa: F811 (the imported fixture)
    """(bus A, bus B, a fan-out reading B): publishing on A reaches B's subscribers."""
    a, b = await open_buses()
    fan = EventFanout(b, frame, SLOW)
    await fan.start()
    yield a, b, fan
    await fan.close(BYE)


class Reader:
    """Collects one subscription's chunks in the background."""

    def __init__(self, fan: EventFanout, groups, after: str) -> None:
        self.data = b""
        self._subscription = fan.open(None if groups is None else frozenset(groups), after)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            while True:
                chunk, last = await self._subscription.take(fanout.BLOCK)
                self.data += chunk
                if last:
                    return
        finally:
            await self._subscription.close()

    async def until(self, count: int) -> list[int]:
        async with asyncio.timeout(10):
            while len(numbers(self.data)) < count:
                await asyncio.sleep(0.01)
        return numbers(self.data)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def test_each_subscriber_gets_exactly_its_groups_events_in_order(hub):
    """Filters by group: a member of x sees x's events, of y y's, an admin all, in order."""
    a, b, fan = hub
    start = await b.latest_cursor()
    readers = {
        "x": Reader(fan, {"x"}, start),
        "y": Reader(fan, {"y"}, start),
        "xy": Reader(fan, {"x", "y"}, start),
        "all": Reader(fan, None, start),
    }
    groups = ["x", "y", "z", "x"]
    for n in range(200):
        await a.publish(event(n, groups[n % 4], *(["y"] if n % 10 == 0 else [])))
    expected = {
        "x": [n for n in range(200) if n % 4 in (0, 3)],
        "y": [n for n in range(200) if n % 4 == 1 or n % 10 == 0],
        "all": list(range(200)),
    }
    expected["xy"] = sorted(set(expected["x"]) | set(expected["y"]))
    for name, reader in readers.items():
        assert await reader.until(len(expected[name])) == expected[name]
    await asyncio.sleep(0.1)
    for name, reader in readers.items():
        assert numbers(reader.data) == expected[name]  # nothing more (no duplicate)
        await reader.stop()
    assert fan.subscribers == 0


async def test_a_subscriber_resuming_from_a_cursor_gets_the_backlog_then_live_once(hub):
    """1,000 events published while a client was away, then live ones: each once, in order."""
    a, _, fan = hub
    cursor = await a.publish(event(0, "x"))
    for start in range(1, 1001, 100):
        await a.publish(*(event(n, "x") for n in range(start, start + 100)))
    reader = Reader(fan, {"x"}, cursor)
    for n in range(1001, 1101):
        await a.publish(event(n, "x"))
    assert await reader.until(1100) == list(range(1, 1101))
    await asyncio.sleep(0.1)
    assert numbers(reader.data) == list(range(1, 1101))
    await reader.stop()


async def test_a_subscriber_joining_while_events_flow_misses_nothing(hub):
    """Subscribing from "now" in the middle of a steady publish: every later event, once."""
    a, b, fan = hub
    publishing = asyncio.create_task(_publish_steadily(a, 400))
    await asyncio.sleep(0.05)
    cursor = await b.latest_cursor()
    reader = Reader(fan, None, cursor)
    await publishing
    expected = [e.payload["n"] for e in await b.read_events(cursor)]
    assert expected  # the publisher was still going
    assert await reader.until(len(expected)) == expected
    await asyncio.sleep(0.1)
    assert numbers(reader.data) == expected
    await reader.stop()


async def _publish_steadily(bus, count: int) -> None:
    for n in range(count):
        await bus.publish(event(n, "x"))
        if n % 20 == 0:
            await asyncio.sleep(0.005)


async def test_a_slow_subscriber_is_dropped_without_holding_back_the_others(hub, monkeypatch):
    """A subscriber that does not read gets one final "too slow" item; a reading one gets
    every event."""
    monkeypatch.setattr(fanout, "QUEUE_EVENTS", 20)
    a, b, fan = hub
    start = await b.latest_cursor()
    stuck = fan.open(frozenset({"x"}), start)
    assert await stuck.take(0.1) == (b"", False)  # caught up (nothing yet): joined
    reader = Reader(fan, {"x"}, start)
    for n in range(0, 100, 10):
        await a.publish(*(event(m, "x") for m in range(n, n + 10)))
        await reader.until(n + 10)  # one batch at a time
    assert numbers(reader.data) == list(range(100))
    assert await stuck.take(5) == (SLOW, True)
    await stuck.close()
    await reader.stop()


async def test_closing_the_fanout_ends_every_subscriber_with_the_final_item(open_buses):  # noqa: F811
    """Shutdown: every open subscription ends with the given last item."""
    a, b = await open_buses()
    fan = EventFanout(b, frame, SLOW)
    await fan.start()
    reader = Reader(fan, None, await b.latest_cursor())
    await a.publish(event(1, "x"))
    await reader.until(1)
    await fan.close(BYE)
    async with asyncio.timeout(5):
        await reader._task
    assert reader.data == b"1;" + BYE


async def test_a_malformed_entry_is_skipped_and_the_reader_goes_on(redis_prefix, caplog):  # noqa: F811
    """Garbage in the Redis stream is logged once and skipped; later events still flow."""
    bus = create_event_bus(REDIS_URL, redis_prefix)
    await bus.start()
    fan = EventFanout(bus, frame, SLOW)
    await fan.start()
    raw = Redis.from_url(REDIS_URL)
    try:
        reader = Reader(fan, None, await bus.latest_cursor())
        await raw.xadd(f"{redis_prefix}:events", {"d": b"not json"})
        await bus.publish(event(7, "x"))
        assert await reader.until(1) == [7]
        await reader.stop()
    finally:
        await fan.close(BYE)
        await bus.close()
        await raw.aclose()
    assert "events.malformed_entry" in caplog.text
