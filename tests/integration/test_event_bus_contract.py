"""The event bus contract: the in-process and the Redis backends behave the same.

Redis tests run against the real server at 127.0.0.1:6379; each uses its own key prefix and
deletes its keys afterwards. Two Redis buses over one prefix stand for two coordinators; the
memory backend lives in one process, so there both roles are played by the same instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from mitosis_sdk.schemas.events import Event, EventKind, LogChunk, LogEnd, ShippedLine
from mitosis_server.events import (
    EventBus,
    EventBusUnavailable,
    InvalidCursor,
    create_event_bus,
)

pytestmark = pytest.mark.timeout(30)

REDIS_URL = "redis://127.0.0.1:6379/0"
NODE_SLACK = 100  # Redis trims whole stream nodes ("MAXLEN ~"), keeping up to one node more


def event(n: int) -> Event:
    return Event(kind=EventKind.TASK_STATE, groups=["g"], object_id=f"task-{n}", payload={"n": n})


def numbers(events: list[Event]) -> list[int]:
    return [e.payload["n"] for e in events]


def unique_prefix() -> str:
    return f"mitosis-test:{uuid.uuid4().hex}"


async def delete_keys(prefixes: list[str]) -> None:
    client = Redis.from_url(REDIS_URL)
    try:
        for prefix in prefixes:
            keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
            if keys:
                await client.delete(*keys)
    finally:
        await client.aclose()


async def take(items: AsyncIterator, count: int) -> list:
    async with asyncio.timeout(30):  # a hang guard, generous for a loaded machine
        return [await anext(items) for _ in range(count)]


@pytest.fixture(params=["memory", "redis"])
async def open_buses(request):
    """Opens (coordinator A, coordinator B) on a fresh stream; closes and cleans up after."""
    opened: list[EventBus] = []
    prefixes: list[str] = []

    async def open_buses(**limits) -> tuple[EventBus, EventBus]:
        if request.param == "memory":
            bus = create_event_bus(None, **limits)
            pair = (bus, bus)
        else:
            prefixes.append(unique_prefix())
            pair = tuple(create_event_bus(REDIS_URL, prefixes[-1], **limits) for _ in "ab")
        for bus in dict.fromkeys(pair):
            await bus.start()
            opened.append(bus)
        return pair

    yield open_buses
    for bus in opened:
        await bus.close()
    await delete_keys(prefixes)


@pytest.fixture
async def pair(open_buses) -> tuple[EventBus, EventBus]:
    return await open_buses()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    prefix = unique_prefix()
    yield prefix
    await delete_keys([prefix])


@pytest.fixture
async def unreachable_bus() -> AsyncIterator[EventBus]:
    """A Redis bus pointed at a loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bus = create_event_bus(f"redis://127.0.0.1:{port}/0", unique_prefix())
    async with asyncio.timeout(5):
        await bus.start()
    yield bus
    await bus.close()


# -- events ------------------------------------------------------------------------------


async def test_read_returns_events_in_publish_order_with_their_cursors(pair):
    """Events read back come in publish order, each carrying the cursor publish returned."""
    a, b = pair
    cursors = [await a.publish(event(n)) for n in range(10)]
    events = await b.read_events()
    assert numbers(events) == list(range(10))
    assert [e.cursor for e in events] == cursors
    assert len(set(cursors)) == 10


async def test_publish_of_several_events_keeps_their_order(pair):
    """One publish call with several events stores them in order and returns the last cursor."""
    a, b = pair
    cursor = await a.publish(*(event(n) for n in range(5)))
    events = await b.read_events()
    assert numbers(events) == list(range(5))
    assert events[-1].cursor == cursor


async def test_read_pages_with_after_and_limit(pair):
    """read_events returns at most ``limit`` events strictly after the cursor."""
    a, b = pair
    cursors = [await a.publish(event(n)) for n in range(10)]
    assert numbers(await b.read_events(after=cursors[4], limit=3)) == [5, 6, 7]
    assert await b.read_events(after=cursors[-1]) == []


async def test_latest_cursor_follows_from_now(pair):
    """Reading after latest_cursor() gets only what was published after it."""
    a, b = pair
    await a.publish(event(0), event(1))
    now = await b.latest_cursor()
    await a.publish(event(2))
    assert numbers(await b.read_events(after=now)) == [2]


async def test_subscribe_yields_backlog_then_live_events(pair):
    """A subscriber gets the backlog after its cursor, then live events, without a seam."""
    a, b = pair
    start = await b.latest_cursor()
    await a.publish(*(event(n) for n in range(3)))
    async with contextlib.aclosing(b.subscribe(start)) as events:
        backlog = await take(events, 3)
        await a.publish(event(3), event(4))
        live = await take(events, 2)
    assert numbers(backlog + live) == [0, 1, 2, 3, 4]


async def test_resume_after_1000_events_has_no_gap_or_duplicate(pair):
    """A subscriber that stops mid-stream and resumes from its last cursor misses nothing."""
    a, b = pair
    start = await b.latest_cursor()

    async def produce() -> None:
        for n in range(1000):
            await a.publish(event(n))
            if n % 25 == 0:
                await asyncio.sleep(0)

    producer = asyncio.create_task(produce())
    seen: list[Event] = []
    async with asyncio.timeout(60):  # a hang guard only: a loaded machine is slow, not wrong
        async with contextlib.aclosing(b.subscribe(start)) as events:
            seen += await take(events, 300)
        async with contextlib.aclosing(b.subscribe(seen[-1].cursor)) as events:
            async for item in events:
                seen.append(item)
                if len(seen) == 1000:
                    break
        await producer
    assert numbers(seen) == list(range(1000))


async def test_malformed_cursor_is_refused(pair):
    """A cursor that is not one this kind of bus issues raises InvalidCursor."""
    _, b = pair
    for cursor in ("nonsense", "", "12-x", "-"):
        with pytest.raises(InvalidCursor):
            await b.read_events(after=cursor)


async def test_cursor_never_issued_by_this_bus_is_refused(open_buses):
    """A cursor from another stream (a reset Redis, a restarted process) raises InvalidCursor."""
    a, _ = await open_buses()
    cursor = await a.publish(event(0), event(1))
    _, fresh = await open_buses()
    with pytest.raises(InvalidCursor, match="unknown"):
        await fresh.read_events(after=cursor)


async def test_cursor_older_than_the_oldest_kept_event_is_refused(open_buses):
    """Once the events after a cursor were trimmed, reading or subscribing from it raises."""
    a, b = await open_buses(event_cap=50)
    first = await a.publish(event(0))
    await a.publish(*(event(n) for n in range(1, 1000)))
    with pytest.raises(InvalidCursor, match="oldest kept"):
        await b.read_events(after=first)
    with pytest.raises(InvalidCursor):
        async with contextlib.aclosing(b.subscribe(first)) as events:
            await take(events, 1)


async def test_event_stream_keeps_the_newest_events_within_its_cap(open_buses):
    """A capped stream keeps at least its cap of newest events and drops the oldest."""
    a, b = await open_buses(event_cap=50)
    await a.publish(*(event(n) for n in range(1000)))
    kept = await b.read_events(limit=1000)
    assert 50 <= len(kept) <= 50 + NODE_SLACK
    assert numbers(kept) == list(range(1000 - len(kept), 1000))


# -- wake-ups ----------------------------------------------------------------------------


async def test_wait_is_woken_by_notify_from_another_coordinator(pair):
    """notify on one coordinator wakes a waiter on another within milliseconds."""
    a, b = pair
    waiting = asyncio.create_task(b.wait(["dispatch:g"], 5))
    await asyncio.sleep(0.05)
    await a.notify("dispatch:g")
    assert await asyncio.wait_for(waiting, 4) is True  # True: woken, not timed out


async def test_wait_times_out_without_notify(pair):
    """wait returns False once its timeout passes with no notify."""
    _, b = pair
    started = time.monotonic()
    assert await asyncio.wait_for(b.wait("dispatch:g", 0.2), 2) is False
    assert time.monotonic() - started >= 0.19


async def test_notify_on_another_topic_does_not_wake(pair):
    """A waiter wakes only for its own topics."""
    a, b = pair
    waiting = asyncio.create_task(b.wait("dispatch:g", 0.3))
    await asyncio.sleep(0.05)
    await a.notify("dispatch:other")
    assert await asyncio.wait_for(waiting, 2) is False


async def test_notify_before_wait_is_kept_by_a_waiter(pair):
    """A notify landing between "checked the database" and "wait" still wakes the waiter."""
    a, b = pair
    with b.waiter(["dispatch:g", "dispatch:h"]) as waiter:
        await a.notify("dispatch:h")
        await asyncio.sleep(0.1)  # the database check that found nothing
        assert await waiter.wait(2) is True
        assert await waiter.wait(0.05) is False


async def test_close_ends_followers_and_releases_waiters(pair):
    """Closing the bus ends subscriptions and returns pending waits at once."""
    a, _ = pair

    async def drain() -> list[Event]:
        return [e async for e in a.subscribe()]

    follower = asyncio.create_task(drain())
    waiting = asyncio.create_task(a.wait("dispatch:g", 10))
    await asyncio.sleep(0.05)
    await a.close()
    async with asyncio.timeout(2):
        assert await follower == []
        await waiting


# -- logs --------------------------------------------------------------------------------


def shipped(*lines: str, stream: str = "stdout") -> list[ShippedLine]:
    return [ShippedLine(stream=stream, text=text) for text in lines]


def texts(chunks: list) -> list[str]:
    return [line.text for chunk in chunks if isinstance(chunk, LogChunk) for line in chunk.lines]


async def test_follow_log_yields_backlog_live_lines_then_the_end(pair):
    """A follower gets earlier lines, then new ones, then LogEnd, and then stops."""
    a, b = pair
    await a.append_log("t1", 1, 1, shipped("one", "two"))
    async with contextlib.aclosing(b.follow_log("t1")) as chunks:
        got = await take(chunks, 1)
        await a.append_log("t1", 1, 3, shipped("three", stream="stderr"))
        got += await take(chunks, 1)
        await a.end_log("t1", ttl=60)
        got += await take(chunks, 1)
        with pytest.raises(StopAsyncIteration):
            await take(chunks, 1)
    lines = [line for chunk in got[:2] for line in chunk.log_lines()]
    assert [(line.stream, line.text, line.cursor) for line in lines] == [
        ("stdout", "one", "1-1"),
        ("stdout", "two", "1-2"),
        ("stderr", "three", "1-3"),
    ]
    assert all(chunk.task_id == "t1" for chunk in got)
    assert isinstance(got[2], LogEnd)
    assert all(abs(line.at - time.time()) < 60 for line in lines)  # when it was shipped


async def test_reading_after_a_line_in_the_middle_of_a_chunk_starts_right_after_it(pair):
    """Any line's cursor resumes exactly after that line, reading or following."""
    a, b = pair
    await a.append_log("t1", 1, 1, shipped("1", "2", "3"))
    await a.append_log("t1", 1, 4, shipped("4", "5"))
    assert texts(await b.read_log("t1", after="1-2")) == ["3", "4", "5"]
    assert texts(await b.read_log("t1", after="1-3")) == ["4", "5"]
    async with contextlib.aclosing(b.follow_log("t1", after="1-4")) as chunks:
        assert texts(await take(chunks, 1)) == ["5"]


async def test_a_batch_not_after_the_newest_line_is_refused(pair):
    """The same batch twice (a retry), or one of an older attempt, is not stored again."""
    a, b = pair
    assert await a.append_log("t1", 2, 1, shipped("x", "y")) == "2-2"
    assert await a.append_log("t1", 2, 1, shipped("x", "y")) is None
    assert await b.append_log("t1", 1, 7, shipped("zombie")) is None
    assert texts(await b.read_log("t1")) == ["x", "y"]


async def test_log_keeps_the_newest_lines_within_its_cap(open_buses):
    """A task log keeps the chunks holding its newest cap lines, and drops the older ones."""
    a, b = await open_buses(log_cap=55)
    for first in range(1, 1001, 10):
        await a.append_log("t1", 1, first, shipped(*(str(n) for n in range(first, first + 10))))
    kept = texts(await b.read_log("t1", limit=1000))
    assert kept == [str(n) for n in range(941, 1001)]  # the chunk holding line 946 and on
    with pytest.raises(InvalidCursor, match="older than the oldest kept"):
        await b.read_log("t1", after="1-5")


async def test_a_new_attempt_s_lines_replace_the_previous_attempt_s(pair):
    """The live log is the current attempt's: a retry's first lines drop the earlier ones."""
    a, b = pair
    await a.append_log("t1", 1, 1, shipped("first try"))
    await a.append_log("t1", 2, 1, shipped("second try"))
    assert texts(await b.read_log("t1")) == ["second try"]


async def test_ended_log_expires_after_its_ttl(pair):
    """end_log's ttl removes the log afterwards."""
    a, b = pair
    await a.append_log("t1", 1, 1, shipped("one"))
    await a.end_log("t1", ttl=0.2)
    await asyncio.sleep(0.4)
    assert await b.read_log("t1") == []


async def test_nothing_is_appended_after_the_end(pair):
    """Lines arriving after the end marker (a late batch) are refused."""
    a, b = pair
    await a.append_log("t1", 1, 1, shipped("one"))
    await a.end_log("t1", ttl=60)
    assert await a.append_log("t1", 1, 2, shipped("late")) is None
    chunks = await b.read_log("t1")
    assert texts(chunks) == ["one"]
    assert isinstance(chunks[-1], LogEnd)


# -- broadcasts --------------------------------------------------------------------------


async def test_broadcast_reaches_listeners_on_another_coordinator(pair):
    """A broadcast on one coordinator calls the topic's listeners on another."""
    a, b = pair
    received: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    b.listen("auth", received.set_result)
    await a.broadcast("auth", "session:42")
    assert await asyncio.wait_for(received, 2) == "session:42"


# -- Redis only ----------------------------------------------------------------------------


async def test_malformed_redis_entry_is_skipped_with_a_log_line(redis_prefix, caplog):
    """Entries that do not decode are logged and skipped; the subscriber reads on past them."""
    bus = create_event_bus(REDIS_URL, redis_prefix)
    raw = Redis.from_url(REDIS_URL)
    await bus.start()
    try:
        start = await bus.publish(event(0))
        await raw.xadd(f"{redis_prefix}:events", {"d": b"not json"})
        await raw.xadd(f"{redis_prefix}:events", {"other": b"field"})
        async with contextlib.aclosing(bus.subscribe(start)) as events:
            reading = asyncio.create_task(take(events, 1))
            await asyncio.sleep(0.2)  # the subscriber reads the two bad entries and waits
            await bus.publish(event(1))
            assert numbers(await reading) == [1]
    finally:
        await bus.close()
        await raw.aclose()
    assert caplog.text.count("events.malformed_entry") >= 2


async def test_publish_without_redis_returns_none_and_logs(unreachable_bus, caplog):
    """With Redis unreachable, writes return None at once and log a warning; nothing raises."""
    started = time.monotonic()
    assert await unreachable_bus.publish(event(0)) is None
    assert await unreachable_bus.append_log("t1", 1, 1, [ShippedLine("stdout", "x")]) is None
    await unreachable_bus.notify("dispatch:g")
    await unreachable_bus.broadcast("auth", "session:1")
    assert time.monotonic() - started < 10  # no waiting on connection timeouts
    logged = caplog.get_records("setup") + caplog.records
    assert any(r.getMessage().startswith("events.redis_down") for r in logged)


async def test_wait_without_redis_falls_back_to_the_timeout(unreachable_bus):
    """With Redis unreachable, wait returns False after its timeout (callers poll)."""
    started = time.monotonic()
    assert await asyncio.wait_for(unreachable_bus.wait("dispatch:g", 0.2), 2) is False
    assert time.monotonic() - started >= 0.19


async def test_reads_without_redis_raise_unavailable(unreachable_bus):
    """With Redis unreachable, reads raise EventBusUnavailable (a 503) instead of hanging."""
    with pytest.raises(EventBusUnavailable):
        await asyncio.wait_for(unreachable_bus.read_events(), 5)
    assert await unreachable_bus.ping() is False


class Outage:
    """A TCP relay to Redis that the test can cut and restore."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 6379)
        self._writers |= {writer, up_writer}

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


async def test_bus_recovers_when_redis_comes_back(redis_prefix):
    """After an outage, publishing stores again and cross-coordinator wake-ups work again."""
    outage = Outage()
    await outage.restore()
    bus = create_event_bus(f"redis://127.0.0.1:{outage.port}/0", redis_prefix)
    other = create_event_bus(REDIS_URL, redis_prefix)
    await bus.start()
    await other.start()
    try:
        await outage.cut()
        assert await bus.publish(event(0)) is None
        await outage.restore()
        async with asyncio.timeout(8):
            while await bus.publish(event(1)) is None:
                await asyncio.sleep(0.05)
            while True:
                with bus.waiter("dispatch:g") as waiter:
                    await other.notify("dispatch:g")
                    if await waiter.wait(0.2):
                        break
        assert numbers(await other.read_events()) == [1]
    finally:
        await bus.close()
        await other.close()
        await outage.cut()
