"""Live events and logs across two real coordinators on one PostgreSQL and one Redis (issue 7).

Two ``mitosis-server`` processes share a fresh database, a Redis key prefix of their own and
one signing key pair, so a token issued by A works on B. Workers are SDK clients holding a
worker token (no processes run), which keeps the 100,000-line proof fast.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import subprocess
import sys
import time
import uuid

import httpx
import pytest
import redis

from mitosis_sdk.auth import CredentialCache
from mitosis_sdk.client import AsyncClient
from mitosis_sdk.errors import BadRequest, Forbidden, NotFound, Unauthorized
from mitosis_sdk.schemas import Grant, Member, Role, TaskSpec, UserState
from mitosis_server.events.log_user import log_user_name
from mitosis_tui.commands.runner import run_batch
from mitosis_tui.config import ClientSettings
from tests.conftest import _pg_execute, free_port
from tests.e2e.processes import Server, start_worker, stop_process

pytestmark = pytest.mark.slow

REDIS = "redis://127.0.0.1:6379/0"
LOG_HISTORY = 120_000


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Coordinators A and B over one fresh PostgreSQL database and one Redis prefix."""
    tmp = tmp_path_factory.mktemp("pair")
    database = f"mito_e2e_{uuid.uuid4().hex[:12]}"
    prefix = f"mito-test-{uuid.uuid4().hex[:8]}"
    asyncio.run(_pg_execute(f'CREATE DATABASE "{database}"'))
    shared = (
        "--db",
        f"postgres://postgres@127.0.0.1:5432/{database}",
        "--redis",
        REDIS,
        "--redis-prefix",
        prefix,
        "--log-history",
        str(LOG_HISTORY),
        "--jwt-private-key",
        str(tmp / "keys" / "jwt.pem"),
        "--jwt-public-key",
        str(tmp / "keys" / "jwt.pub.pem"),
    )
    servers = [
        Server(tmp / f"data-{name}", free_port(), tmp / f"{name}.log", *shared) for name in "ab"
    ]
    try:
        for server in servers:  # A first: it migrates and writes the key pair B reuses
            server.start()
        yield servers[0], servers[1], prefix
    finally:
        for server in servers:
            if server.process is not None:
                stop_process(server.process, signal.SIGTERM)
        asyncio.run(_pg_execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        client = redis.Redis.from_url(REDIS)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        client.execute_command("ACL", "DELUSER", log_user_name(prefix))
        client.close()


async def user(server: Server, name: str | None = None) -> AsyncClient:
    """A new user (with a personal group of the same name), logged in on ``server``."""
    name = name or f"u{uuid.uuid4().hex[:10]}"
    async with AsyncClient(server.url) as admin:
        await admin.login("mitosis_admin", "mitosis_admin")
        await admin.create_user(name, "pw-pw-pw-pw")
    client = AsyncClient(server.url)
    await client.login(name, "pw-pw-pw-pw")
    client.name = name
    return client


async def worker_of(owner: AsyncClient, server: Server) -> tuple[str, AsyncClient]:
    """A worker registered by ``owner`` (granted its personal group), talking to ``server``."""
    registered = await owner.register_worker(version="test")
    return str(registered.worker.uuid), AsyncClient(server.url, registered.token)


def on(client: AsyncClient, server: Server) -> AsyncClient:
    """The same session, talking to another coordinator."""
    other = AsyncClient(server.url, client.token)
    other.name = getattr(client, "name", None)
    return other


def collect(stream) -> tuple[list, asyncio.Task]:
    """Items of ``stream`` appended to a list by a background task (cancel it when done)."""
    seen: list = []

    async def run() -> None:
        async for item in stream:
            seen.append(item)

    return seen, asyncio.create_task(run())


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


async def test_logout_on_a_is_refused_on_b_within_a_second(pair):
    """A revoked session stops working on the other coordinator within one second."""
    a, b, _ = pair
    alice = await user(a)
    elsewhere = on(alice, b)
    async with alice, elsewhere:
        await elsewhere.whoami()  # cached on B now
        await alice.logout()
        started = time.monotonic()
        while time.monotonic() - started < 1.0:
            try:
                await elsewhere.whoami()
            except Unauthorized:
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("B still accepts a token logged out on A after 1 s")


async def test_members_of_one_group_never_see_another_groups_events_or_logs(pair):
    """Bob's stream stays silent while Alice's tasks change; her task's log is a 404 to him."""
    a, b, _ = pair
    alice, bob = await user(a), await user(b)
    async with alice, bob:
        seen, watching = collect(bob.events())
        await asyncio.sleep(0.5)
        hers = await alice.submit_task(TaskSpec(command=["true"]))
        await alice.cancel_task(hers.uuid)
        his = await bob.submit_task(TaskSpec(command=["true"]))
        async with asyncio.timeout(10):
            while not any(e.object_id == str(his.uuid) for e in seen):
                await asyncio.sleep(0.05)
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        assert all(bob.name in e.groups for e in seen)
        assert not any(e.object_id == str(hers.uuid) for e in seen)
        with pytest.raises(NotFound):
            async for _ in bob.follow_logs(hers.uuid, follow=False):
                pass
        with pytest.raises(NotFound):
            async for _ in bob.events(groups=[alice.name]):
                pass


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


async def test_a_hundred_thousand_lines_are_followed_in_order(pair):
    """Lines shipped to A by the worker holding the attempt reach a follower on B in order,
    then the stream ends when the task does; Redis keeps no more than the cap."""
    a, b, prefix = pair
    alice = await user(a)
    worker, client = await worker_of(alice, a)
    follower = on(alice, b)
    async with alice, client, follower:
        submitted = await alice.submit_task(TaskSpec(command=["seq", "100000"]))
        (task,) = (await client.fetch_tasks(worker, wait=5.0)).tasks
        received: list[str] = []

        async def follow():
            async for line in follower.follow_logs(submitted.uuid):
                received.append(line.text)

        following = asyncio.create_task(follow())
        for start in range(0, 100_000, 5000):
            lines = [("stdout", str(n)) for n in range(start, start + 5000)]
            await client.ship_logs(worker, task.task, task.attempt, lines, first_line=start + 1)
        await client.report_result(worker, task.task, task.attempt, exit_code=0)
        async with asyncio.timeout(60):
            await following
        assert received == [str(n) for n in range(100_000)]
        length = redis.Redis.from_url(REDIS).xlen(f"{prefix}:log:{submitted.uuid}")
        assert length <= LOG_HISTORY + 1


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
    database = f"mito_e2e_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_execute(f'CREATE DATABASE "{database}"'))
    shared = (
        "--db",
        f"postgres://postgres@127.0.0.1:5432/{database}",
        "--redis",
        own_redis.url,
        "--jwt-private-key",
        str(tmp_path / "keys" / "jwt.pem"),
        "--jwt-public-key",
        str(tmp_path / "keys" / "jwt.pub.pem"),
    )
    servers = [
        Server(tmp_path / f"data-{name}", free_port(), tmp_path / f"{name}.log", *shared)
        for name in "ab"
    ]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            if server.process is not None:
                stop_process(server.process, signal.SIGTERM)
        asyncio.run(_pg_execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


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


async def test_batch_wait_logs_and_events(pair, tmp_path):
    """`tasks wait` exits 0/1 by outcome, `tasks logs` prints one stream, `events` feeds."""
    a, b, _ = pair
    alice = await user(a)
    worker, client = await worker_of(alice, a)
    mito = batch(b, tmp_path, alice.name)
    async with alice, client:
        feed = io.StringIO()
        events = asyncio.create_task(mito("events", as_json=True, out=feed))
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


async def ends_with(stream, error: type[Exception], timeout: float = 10.0) -> None:
    """Drain ``stream`` until it raises ``error`` (bounded)."""

    async def drain() -> None:
        async for _ in stream:
            pass

    with pytest.raises(error):
        await asyncio.wait_for(drain(), timeout)


async def admin_on(server: Server) -> AsyncClient:
    admin = AsyncClient(server.url)
    await admin.login("mitosis_admin", "mitosis_admin")
    return admin


async def test_a_logout_on_a_ends_an_open_event_stream_on_b(pair):
    """The stream learns of the revoked session and ends with a clear 401 (not a hang)."""
    a, b, _ = pair
    alice = await user(a)
    watcher = on(alice, b)
    async with alice, watcher:
        stream = watcher.events()
        ending = asyncio.create_task(ends_with(stream, Unauthorized))
        await asyncio.sleep(0.5)
        await alice.logout()
        await ending


async def test_locking_a_user_ends_their_open_streams(pair):
    """An admin locking a user ends the user's event stream with account_locked (403)."""
    a, b, _ = pair
    alice = await user(a)
    admin = await admin_on(a)
    watcher = on(alice, b)
    async with alice, admin, watcher:
        ending = asyncio.create_task(ends_with(watcher.events(), Forbidden))
        await asyncio.sleep(0.5)
        await admin.set_user_state(alice.name, UserState.LOCKED)
        await ending


async def test_a_password_change_ends_an_open_log_stream(pair):
    """Following a running task's log, then changing the password: the log stream ends."""
    a, b, _ = pair
    alice = await user(a)
    worker, client = await worker_of(alice, a)
    follower = on(alice, b)
    async with alice, client, follower:
        submitted = await alice.submit_task(TaskSpec(command=["sleep", "60"]))
        (task,) = (await client.fetch_tasks(worker, wait=5.0)).tasks
        await client.ship_logs(worker, task.task, task.attempt, [("stdout", "hi")], first_line=1)
        ending = asyncio.create_task(ends_with(follower.follow_logs(submitted.uuid), Unauthorized))
        await asyncio.sleep(0.5)
        await alice.change_password("pw-pw-pw-pw", "pw-pw-pw-pw-2")
        await ending


async def shared_group(owner: AsyncClient, member: AsyncClient) -> str:
    name = f"lab{uuid.uuid4().hex[:8]}"
    await owner.create_group(name)
    await owner.update_members(name, [Member(username=member.name, role=Role.READ)])
    return name


async def test_losing_a_group_ends_a_stream_opened_for_that_group(pair):
    """Bob follows group lab's events and log; removed from lab, both end with a 403."""
    a, b, _ = pair
    alice, bob = await user(a), await user(b)
    worker, client = await worker_of(alice, a)
    async with alice, bob, client:
        lab = await shared_group(alice, bob)
        await alice.update_worker_grants(worker, [Grant(group=lab, role=Role.WRITE)])
        submitted = await alice.submit_task(TaskSpec(command=["sleep", "60"], group=lab))
        await client.fetch_tasks(worker, wait=5.0)
        events = asyncio.create_task(ends_with(bob.events(groups=[lab]), Forbidden))
        logs = asyncio.create_task(ends_with(bob.follow_logs(submitted.uuid), Forbidden))
        await asyncio.sleep(0.5)
        await alice.remove_members(lab, [bob.name])
        await asyncio.gather(events, logs)


async def test_a_member_removed_mid_stream_receives_nothing_more_of_that_group(pair):
    """Bob's "all my groups" stream: lab's events while he is a member, none after he is
    removed (the stream reconnects by itself with his new groups), his own still."""
    a, b, _ = pair
    alice, bob = await user(a), await user(b)
    async with alice, bob:
        lab = await shared_group(alice, bob)
        seen, watching = collect(bob.events())
        await asyncio.sleep(0.5)
        before = await alice.submit_task(TaskSpec(command=["true"], group=lab))
        await wait_for_event(seen, before.uuid)
        await alice.remove_members(lab, [bob.name])
        await asyncio.sleep(2.5)  # the stream notices (about a second) and reconnects
        after = await alice.submit_task(TaskSpec(command=["true"], group=lab))
        his = await bob.submit_task(TaskSpec(command=["true"]))
        await wait_for_event(seen, his.uuid)
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        assert not any(e.object_id == str(after.uuid) for e in seen)
        assert all(bob.name in e.groups or lab in e.groups for e in seen)


async def wait_for_event(seen: list, task, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not any(e.object_id == str(task) for e in seen):
            await asyncio.sleep(0.05)


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
