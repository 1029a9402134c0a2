"""Live events and logs across two real coordinators on one PostgreSQL and one Redis (issue 7):
wake-ups, events, resuming, logs (through the coordinator and straight into Redis), Redis
outages and the batch commands. Who may follow what is in test_stream_revocation.py."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import subprocess
import sys
import time

import httpx
import msgspec
import pytest
import redis

from mitosis_sdk.auth import CredentialCache
from mitosis_sdk.errors import BadRequest, NotFound
from mitosis_sdk.schemas import TaskSpec
from mitosis_sdk.schemas.events import LogChunk, LogEnd
from mitosis_server.events.log_user import log_user_name
from mitosis_tui.commands.runner import run_batch
from mitosis_tui.config import ClientSettings
from tests.conftest import free_port
from tests.e2e.live import (  # noqa: F401 (pair_fixture: the `pair` fixture)
    REDIS,
    collect,
    coordinator_pair,
    on,
    pair_fixture,
    prefixed_pair,
    user,
    wait_for_event,
    worker_of,
)
from tests.e2e.processes import Server, start_worker, stop_process

pytestmark = pytest.mark.slow


async def test_submit_on_a_wakes_a_fetch_parked_on_b(pair):
    """A worker long-polling on B claims a task submitted on A long before its poll ends."""
    a, b, _ = pair
    alice = await user(a)
    worker, client = await worker_of(alice, b)
    async with alice, client:
        fetch = asyncio.create_task(client.fetch_tasks(worker, wait=20.0))
        await asyncio.sleep(0.5)  # parked on B
        started = time.monotonic()
        submitted = await alice.submit_task(TaskSpec(command=["true"]))
        async with asyncio.timeout(10):
            reply = await fetch
        assert [t.task for t in reply.tasks] == [submitted.uuid]
        assert time.monotonic() - started < 5.0  # woken, not the 20 s poll nor a recheck


async def test_client_on_b_sees_a_task_submitted_on_a_run_and_finish(pair):
    """The event stream on B carries ready, running and completed of a task from A."""
    a, b, _ = pair
    alice = await user(a)
    worker, client = await worker_of(alice, a)
    watcher = on(alice, b)
    async with alice, client, watcher:
        seen: list = []

        async def watch():
            async for event in watcher.events():
                seen.append(event)
                if event.payload.get("state") == "completed":
                    return

        watching = asyncio.create_task(watch())
        await asyncio.sleep(0.5)
        submitted = await alice.submit_task(TaskSpec(command=["true"]))
        reply = await client.fetch_tasks(worker, wait=5.0)
        (task,) = reply.tasks
        await client.report_result(worker, task.task, task.attempt, exit_code=0)
        async with asyncio.timeout(10):
            await watching
        states = [e.payload["state"] for e in seen if e.object_id == str(submitted.uuid)]
        assert states == ["ready", "running", "completed"]
        done = await watcher.wait_tasks([submitted.uuid])
        assert done[0].state == "completed"


async def test_reconnect_with_a_cursor_delivers_a_thousand_events_once(pair):
    """Events published while a client was away all arrive, once, when it resumes."""
    a, b, _ = pair
    alice = await user(a)
    async with alice:
        watcher = on(alice, b)
        first = await alice.submit_task(TaskSpec(command=["true"]))

        async def cursor_of_first() -> str:
            async for event in watcher.events(cursor=None):
                if event.object_id == str(first.uuid):
                    return event.cursor
            raise AssertionError

        marker = asyncio.create_task(cursor_of_first())
        await asyncio.sleep(0.5)
        await alice.cancel_task(first.uuid)  # an event after the stream is open
        async with asyncio.timeout(10):
            cursor = await marker
        reply = await alice.submit_tasks([TaskSpec(command=["true"]) for _ in range(1000)])
        wanted = {str(r.task.uuid) for r in reply.results}
        counts: dict[str, int] = {}
        async with asyncio.timeout(30):
            async for event in watcher.events(cursor=cursor):
                if event.object_id in wanted:
                    counts[event.object_id] = counts.get(event.object_id, 0) + 1
                    if len(counts) == len(wanted):
                        break
        await watcher.aclose()
        assert set(counts) == wanted
        assert set(counts.values()) == {1}


async def test_shipping_needs_the_open_attempt(pair):
    """A worker cannot ship lines for an attempt it does not hold."""
    a, _, _ = pair
    alice = await user(a)
    worker, client = await worker_of(alice, a)
    async with alice, client:
        submitted = await alice.submit_task(TaskSpec(command=["true"]))
        with pytest.raises(NotFound):
            await client.ship_logs(worker, submitted.uuid, 1, [("stdout", "x")], first_line=1)


async def test_invalid_cursors_are_a_clear_400(pair):
    """A malformed or never-issued cursor is refused before anything is streamed."""
    _, b, _ = pair
    alice = await user(b)
    async with alice:
        submitted = await alice.submit_task(TaskSpec(command=["true"]))
        for cursor in ("not-a-cursor", "99999999999999-0"):
            with pytest.raises(BadRequest, match="cursor"):
                async for _ in alice.events(cursor=cursor):
                    pass
            with pytest.raises(BadRequest, match="cursor"):
                async for _ in alice.follow_logs(submitted.uuid, cursor=cursor):
                    pass


class OwnRedis:
    """A Redis of this test's own on a free loopback port, to stop and restart at will
    (never the machine's shared one)."""

    def __init__(self, directory) -> None:
        self.port, self.directory = free_port(), directory
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.directory)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=self.port).ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, signal.SIGTERM, timeout=10)


@pytest.fixture
def own_redis(tmp_path):
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pair_on_own_redis(tmp_path, own_redis):
    """Coordinators A and B on a fresh PostgreSQL database and this test's own Redis."""
    with coordinator_pair(tmp_path, own_redis.url) as servers:
        yield servers


async def test_redis_down_mid_run_then_back(pair_on_own_redis, own_redis):
    """Redis stopped mid-run: both coordinators keep serving (/ready says degraded), a fetch
    parked on B still gets a task submitted on A (the re-check replaces the lost wake-up),
    and the outage is logged; Redis back: an event stream opened before the outage carries
    new events again."""
    a, b = pair_on_own_redis
    alice = await user(a)
    worker, client = await worker_of(alice, b)
    watcher = on(alice, b)
    async with alice, client, watcher:
        seen, watching = collect(watcher.events())
        first = await alice.submit_task(TaskSpec(command=["true"]))
        await wait_for_event(seen, first.uuid)
        await alice.cancel_task(first.uuid)
        own_redis.stop()
        parked = asyncio.create_task(client.fetch_tasks(worker, wait=25.0))
        await asyncio.sleep(0.5)
        during = await alice.submit_task(TaskSpec(command=["true"]))
        reply = await asyncio.wait_for(parked, 40)  # the poll itself ends after 25 s
        assert [t.task for t in reply.tasks] == [during.uuid], "the re-check missed it"
        for server in (a, b):
            ready = httpx.get(f"{server.url}/ready", timeout=5)
            assert (ready.status_code, ready.json()["status"]) == (200, "degraded")
        assert "events.redis_down" in b.log.read_text()
        own_redis.start()  # empty: nothing was saved
        async with asyncio.timeout(60):
            while True:  # the publisher notices Redis is back on its next write
                after = await alice.submit_task(TaskSpec(command=["true"]))
                try:
                    await wait_for_event(seen, after.uuid, timeout=2.0)
                    break
                except TimeoutError:
                    continue
        assert not watching.done()
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        assert "events.redis_back" in b.log.read_text()


def batch(server: Server, tmp_path, name: str):
    """``await mito(*argv)`` runs one ``mitosis-tui --batch`` command as ``name`` on
    ``server``: (exit code, stdout, stderr)."""

    async def run(*argv: str, as_json: bool = False, out: io.StringIO | None = None):
        out = out if out is not None else io.StringIO()
        err = io.StringIO()
        settings = ClientSettings(coordinator=server.url, user=name, password="pw-pw-pw-pw")
        code = await run_batch(
            settings,
            list(argv),
            as_json=as_json,
            stdout=out,
            stderr=err,
            cache=CredentialCache(tmp_path / f"{name}.json"),
        )
        return code, out.getvalue(), err.getvalue()

    return run


async def until_live(feed: io.StringIO, client) -> None:
    """``events`` starts from now: submit and cancel probe tasks until one shows in the
    feed, so the events a test waits for come after it is live (under load it connects
    late)."""
    for _ in range(20):
        probe = (await client.submit_task(TaskSpec(command=["true"]))).uuid
        await client.cancel_task(probe)
        for _ in range(10):
            if str(probe) in feed.getvalue():
                return
            await asyncio.sleep(0.05)
    raise AssertionError("the events feed never went live")


async def test_batch_wait_logs_and_events(pair, tmp_path):
    """`tasks wait` exits 0/1 by outcome, `tasks logs` prints one stream, `events` feeds."""
    a, b, _ = pair
    alice = await user(a)
    worker, client = await worker_of(alice, a)
    mito = batch(b, tmp_path, alice.name)
    async with alice, client:
        feed = io.StringIO()
        events = asyncio.create_task(mito("events", as_json=True, out=feed))
        await until_live(feed, alice)
        ok, bad = (await alice.submit_tasks([TaskSpec(command=["x"])] * 2)).results
        waiting = asyncio.create_task(mito("tasks", "wait", str(ok.task.uuid), "--timeout", "20s"))
        tasks = (await client.fetch_tasks(worker, wait=5.0, max_tasks=2)).tasks
        assert len(tasks) == 1  # one slot
        first = tasks[0]
        await client.ship_logs(
            worker,
            first.task,
            first.attempt,
            [("stdout", "hello"), ("stderr", "oops")],
            first_line=1,
        )
        await client.report_result(
            worker, first.task, first.attempt, exit_code=0 if first.task == ok.task.uuid else 3
        )
        (second,) = (await client.fetch_tasks(worker, wait=5.0)).tasks
        await client.report_result(
            worker, second.task, second.attempt, exit_code=0 if second.task == ok.task.uuid else 3
        )
        code, _, _ = await asyncio.wait_for(waiting, 20)
        assert code == 0
        assert (await mito("tasks", "wait", str(bad.task.uuid), "--timeout", "5s"))[0] == 1
        code, out, _ = await mito("tasks", "logs", str(first.task))
        assert (code, out) == (0, "hello\n")
        code, out, _ = await mito("tasks", "logs", str(first.task), "--stderr", "-f")
        assert (code, out) == (0, "oops\n")
        async with asyncio.timeout(10):
            while str(second.task) not in feed.getvalue():
                await asyncio.sleep(0.05)
        events.cancel()
        await asyncio.gather(events, return_exceptions=True)
        kinds = [json.loads(line)["kind"] for line in feed.getvalue().splitlines()]
        assert "task.state" in kinds


CAPPED_LOG, CHUNK, TOTAL = 10_000, 5_000, 100_000
_log_entries = msgspec.json.Decoder(LogChunk | LogEnd)


@pytest.fixture
def capped_pair(tmp_path):
    """A and B keeping only the newest ``CAPPED_LOG`` live lines of a task (the default)."""
    with prefixed_pair(tmp_path, "--log-history", str(CAPPED_LOG)) as servers:
        yield servers


def lines_kept_in_redis(prefix: str, task) -> int:
    """How many lines the task's live log holds in Redis right now."""
    with redis.Redis.from_url(REDIS) as client:
        entries = client.xrange(f"{prefix}:log:{task}")
    items = [_log_entries.decode(fields[b"d"]) for _, fields in entries]
    return sum(len(item.lines) for item in items if isinstance(item, LogChunk))


async def test_tasks_logs_f_shows_a_hundred_thousand_lines_while_redis_keeps_the_cap(
    capped_pair, tmp_path
):
    """`tasks logs -f` on B prints all 100,000 lines shipped to A, in order, then exits when
    the task ends; meanwhile Redis holds at most the newest ``CAPPED_LOG`` lines (rounded up
    to whole chunks), never the whole output. Each chunk is shipped once the follower has
    printed the previous one, as a follower keeping up with the task would."""
    a, b, prefix = capped_pair
    alice = await user(a)
    worker, client = await worker_of(alice, a)
    mito = batch(b, tmp_path, alice.name)
    async with alice, client:
        submitted = await alice.submit_task(TaskSpec(command=["seq", str(TOTAL)]))
        (task,) = (await client.fetch_tasks(worker, wait=5.0)).tasks
        printed = io.StringIO()
        following = asyncio.create_task(
            mito("tasks", "logs", str(submitted.uuid), "-f", out=printed)
        )
        expected, kept = "", []
        for start in range(0, TOTAL, CHUNK):
            lines = [("stdout", str(n)) for n in range(start, start + CHUNK)]
            await client.ship_logs(worker, task.task, task.attempt, lines, first_line=start + 1)
            expected += "".join(f"{text}\n" for _, text in lines)
            async with asyncio.timeout(30):  # a hang guard
                while printed.tell() < len(expected):
                    await asyncio.sleep(0.01)
            kept.append(lines_kept_in_redis(prefix, submitted.uuid))
        await client.report_result(worker, task.task, task.attempt, exit_code=0)
        code, _, _ = await asyncio.wait_for(following, 60)
        assert code == 0
        assert printed.getvalue() == expected
        assert max(kept) < CAPPED_LOG + CHUNK
        assert kept[-1] >= CAPPED_LOG  # the newest lines stay for late readers


async def test_a_real_worker_writes_its_task_s_output_straight_into_redis(pair, tmp_path):
    """A `mitosis-worker` on A gets the log user at registration and appends the task's
    lines itself (its Redis connection is the log user's); a follower on B reads them all."""
    a, b, prefix = pair
    alice = await user(a)
    follower = on(alice, b)
    worker = start_worker(
        a, tmp_path / "home", tmp_path / "worker.log", "-u", alice.name, "-p", "pw-pw-pw-pw"
    )
    try:
        async with alice, follower:
            script = "import sys\nfor n in range(20000): print(n)\nprint('bye', file=sys.stderr)"
            submitted = await alice.submit_task(TaskSpec(command=[sys.executable, "-c", script]))
            received: list[tuple[str, str]] = []
            async with asyncio.timeout(60):
                async for line in follower.follow_logs(submitted.uuid):
                    received.append((line.stream, line.text))
            done = await follower.wait_tasks([submitted.uuid])
            assert done[0].state == "completed"
            assert [t for s, t in received if s == "stdout"] == [str(n) for n in range(20000)]
            assert [t for s, t in received if s == "stderr"] == ["bye"]
            clients = redis.Redis.from_url(REDIS).client_list()
            assert any(c["user"] == log_user_name(prefix) for c in clients)
    finally:
        stop_process(worker)
