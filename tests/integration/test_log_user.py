"""Workers writing live logs straight into Redis with a least-privilege ACL user (issue 7,
item 3), against the real Redis at 127.0.0.1:6379. Each test has its own key prefix, so its
own ACL user; both are deleted afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import msgspec
import pytest
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, NoPermissionError

from mitosis_sdk.schemas.events import LogChunk, ShippedLine
from mitosis_server.events import create_event_bus
from mitosis_server.events.log_user import (
    KEEP_PASSWORDS,
    log_user_name,
    provision_log_user,
    without_credentials,
)
from mitosis_worker.logs import LogLine
from mitosis_worker.logship import RedisLogWriter, log_shipper

pytestmark = pytest.mark.timeout(30)

REDIS_URL = "redis://127.0.0.1:6379/0"


async def cleanup(prefix: str) -> None:
    client = Redis.from_url(REDIS_URL)
    try:
        await client.execute_command("ACL", "DELUSER", log_user_name(prefix))
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def prefix():
    name = f"mitosis-test-{uuid.uuid4().hex[:12]}"
    yield name
    await cleanup(name)


async def provision(prefix: str):
    target = await provision_log_user(REDIS_URL, prefix, REDIS_URL, 1000, 60.0)
    assert target is not None
    return target


@contextlib.asynccontextmanager
async def logged_in(target, password: str | None = None):
    client = Redis.from_url(
        target.url, username=target.username, password=password or target.password
    )
    try:
        yield client
    finally:
        await client.aclose()


async def test_the_log_user_can_append_to_logs_and_wake_their_followers(prefix):
    """What a worker needs: XADD to a log stream, its expiry, a publish on its wake channel."""
    target = await provision(prefix)
    async with logged_in(target) as worker:
        await worker.xadd(f"{prefix}:log:t1", {"d": b"x"}, id="1-1")
        await worker.pexpire(f"{prefix}:log:t1", 60_000)
        await worker.publish(f"{prefix}:wake:log:t1", "worker")


@pytest.mark.parametrize(
    "command",
    [
        ("XRANGE", "{p}:events", "-", "+"),
        ("XREAD", "STREAMS", "{p}:events", "0-0"),
        ("XRANGE", "{p}:log:t1", "-", "+"),
        ("XREAD", "STREAMS", "{p}:log:t1", "0-0"),
        ("XLEN", "{p}:log:t1"),
        ("XADD", "{p}:events", "*", "d", "forged"),
        ("XADD", "other-{p}:log:t1", "*", "d", "x"),
        ("LRANGE", "{p}:acl:log-shipper", "0", "-1"),
        ("GET", "{p}:anything"),
        ("DEL", "{p}:log:t1"),
        ("KEYS", "*"),
        ("PUBLISH", "{p}:bc:auth.forget", "*"),
        ("PUBLISH", "{p}:wake:group:lab", "x"),
        ("ACL", "LIST"),
        ("CONFIG", "GET", "*"),
    ],
)
async def test_the_log_user_can_read_nothing_and_write_nothing_else(prefix, command):
    """Least privilege: no events, no logs, no other prefix, no other command or channel."""
    target = await provision(prefix)
    async with logged_in(target) as worker:
        await worker.xadd(f"{prefix}:log:t1", {"d": b"x"}, id="1-1")
        with pytest.raises(NoPermissionError):
            await worker.execute_command(*(part.format(p=prefix) for part in command))


async def test_each_start_rotates_the_password_keeping_the_last_few(prefix):
    """A new password per start-up; the oldest stop working once KEEP_PASSWORDS are newer."""
    targets = [await provision(prefix) for _ in range(KEEP_PASSWORDS + 1)]
    assert len({t.password for t in targets}) == len(targets)
    with pytest.raises(AuthenticationError):
        async with logged_in(targets[0]) as worker:
            await worker.ping()
    for target in targets[1:]:
        async with logged_in(target) as worker:
            assert await worker.ping()


async def test_lines_written_by_the_worker_reach_a_coordinator_s_follower(prefix):
    """A worker's RedisLogWriter appends chunks the coordinators' bus reads and follows."""
    target = await provision(prefix)
    bus = create_event_bus(REDIS_URL, prefix)
    await bus.start()
    writer = RedisLogWriter(target)
    try:
        async with contextlib.aclosing(bus.follow_log("t1")) as chunks:
            sink = log_shipper(None, "w", "t1", 1, writer)
            following = asyncio.create_task(anext(chunks))
            await asyncio.sleep(0.2)  # the follower waits
            await sink([LogLine("stdout", "one"), LogLine("stderr", "two")])
            chunk = await asyncio.wait_for(following, 5)
            await sink([LogLine("stdout", "three")])
            later = await asyncio.wait_for(anext(chunks), 5)
        assert isinstance(chunk, LogChunk)
        assert [(x.stream, x.text, x.cursor) for x in chunk.log_lines()] == [
            ("stdout", "one", "1-1"),
            ("stderr", "two", "1-2"),
        ]
        assert [x.text for x in later.log_lines()] == ["three"]
        assert writer.usable
    finally:
        await writer.aclose()
        await bus.close()


async def test_a_batch_written_twice_is_kept_once(prefix):
    """A retried write (same position) is not an error and not a second copy."""
    target = await provision(prefix)
    writer = RedisLogWriter(target)
    bus = create_event_bus(REDIS_URL, prefix)
    try:
        lines = [ShippedLine("stdout", "x")]
        await writer.append("t1", 1, 1, lines)
        await writer.append("t1", 1, 1, lines)
        assert len(await bus.read_log("t1")) == 1
    finally:
        await writer.aclose()
        await bus.close()


class Coordinator:
    """The coordinator's side of log shipping, as the shipper sees it."""

    def __init__(self) -> None:
        self.shipped: list = []

    async def ship_logs(self, worker, task, attempt, lines, *, first_line) -> None:
        self.shipped.append((first_line, [x.text for x in lines]))


async def test_the_shipper_falls_back_to_the_coordinator_when_redis_refuses(prefix):
    """A rotated-away password: the first refusal switches to the coordinator, no line lost."""
    target = await provision(prefix)
    stale = RedisLogWriter(msgspec.structs.replace(target, password="rotated-away"))
    coordinator = Coordinator()
    try:
        sink = log_shipper(coordinator, "w", "t1", 1, stale)
        await sink([LogLine("stdout", "a")])
        await sink([LogLine("stdout", "b")])
    finally:
        await stale.aclose()
    assert not stale.usable
    assert coordinator.shipped == [(1, ["a"]), (2, ["b"])]


async def test_a_redis_without_the_right_to_manage_acls_hands_out_nothing(prefix, caplog):
    """A coordinator whose own Redis user may not manage ACLs logs it and returns None."""
    admin = Redis.from_url(REDIS_URL)
    user = f"{prefix}:plain"
    await admin.execute_command("ACL", "SETUSER", user, "on", ">pw", "~*", "+@all", "-acl")
    try:
        url = f"redis://{user}:pw@127.0.0.1:6379/0"
        assert await provision_log_user(url, prefix, REDIS_URL, 10, 1.0) is None
    finally:
        await admin.execute_command("ACL", "DELUSER", user)
        await admin.aclose()
    assert "events.log_user_unavailable" in caplog.text


def test_workers_get_the_redis_url_without_the_coordinator_s_credentials():
    assert without_credentials("redis://coord:secret@redis.internal:6380/2") == (
        "redis://redis.internal:6380/2"
    )
    assert without_credentials("rediss://:pw@[::1]/0") == "rediss://[::1]/0"
