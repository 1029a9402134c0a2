"""The worker daemon against the real coordinator app, running real processes.

The daemon talks to the app in-process (httpx's ASGI transport); tasks are real
subprocesses in real attempt directories.
"""

from __future__ import annotations

import asyncio
import sys
import tarfile
import time

import pytest

from mitosis_sdk import errors
from mitosis_sdk.client import AsyncClient
from mitosis_sdk.schemas import Dependency, Resource, TaskSpec
from mitosis_worker.config import WorkerSettings
from mitosis_worker.daemon import WorkerDaemon

PY = sys.executable


@pytest.fixture
async def alice(make_user):
    return await make_user("alice")


@pytest.fixture
async def start_worker(transport, alice, tmp_path):
    """``await start_worker(slots=…)``: a daemon acting for alice, stopped at the end."""
    started: list[tuple[WorkerDaemon, asyncio.Task]] = []

    async def _start(**options) -> WorkerDaemon:
        settings = WorkerSettings(
            work_dir=str(tmp_path / f"work{len(started)}"),
            heartbeat_interval=0.2,
            poll_wait=1.0,
            grace=1.0,
            shutdown_grace=options.pop("shutdown_grace", 5.0),
            **options,
        )
        client = AsyncClient("http://mitosis.test", alice.token, transport=transport)
        daemon = WorkerDaemon(settings, client)
        task = asyncio.create_task(daemon.run())
        started.append((daemon, task))
        for _ in range(100):
            if daemon.worker_id is not None:
                return daemon
            assert not task.done(), task.exception()
            await asyncio.sleep(0.05)
        raise AssertionError("the worker did not register")

    _start.started = started
    yield _start
    for daemon, task in started:
        daemon.request_stop(immediately=True)
        await asyncio.wait_for(task, timeout=30)
        await daemon.client.aclose()


async def wait_state(client, task, states, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = await client.get_task(task)
        if info.state in states:
            return info
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task} stayed {info.state}, wanted {states}")


async def submit(client, *command, **spec):
    return (await client.submit_task(TaskSpec(command=list(command), **spec))).uuid


async def test_a_task_runs_and_completes(alice, start_worker):
    await start_worker()
    task = await submit(alice, "true")
    info = await wait_state(alice, task, {"completed"})
    assert info.exit_code == 0


async def test_nonzero_exit_fails_with_the_code(alice, start_worker):
    await start_worker()
    task = await submit(alice, "sh", "-c", "exit 3")
    info = await wait_state(alice, task, {"failed"})
    assert (info.exit_code, info.reason) == (3, "nonzero_exit")


async def test_missing_command_fails_with_exec_error(alice, start_worker):
    """A command that does not exist: reason exec_error and the OS message (no crash)."""
    daemon = await start_worker()
    task = await submit(alice, "/no/such/program")
    info = await wait_state(alice, task, {"failed"})
    assert info.reason == "exec_error"
    assert "No such file" in info.message
    follow_up = await submit(alice, "true")
    await wait_state(alice, follow_up, {"completed"})
    assert not daemon.stop.is_set()


async def test_the_task_sees_its_mito_variables(alice, start_worker):
    """The spec's variables and the MITO_* ones arrive; the attempt dir is the cwd."""
    await start_worker()
    check = (
        "import os, sys, uuid; e = os.environ;"
        "uuid.UUID(e['MITO_TASK_UUID']);"
        "ok = e['MITO_ATTEMPT'] == '1' and os.getcwd() == os.path.dirname(e['MITO_RESULT_DIR'])"
        " and e['SEED'] == '7' and 'MITO_ARRAY_INDEX' not in e;"
        "sys.exit(0 if ok else 9)"
    )
    task = (await alice.submit_task(TaskSpec(command=[PY, "-c", check], env={"SEED": "7"}))).uuid
    assert (await wait_state(alice, task, {"completed", "failed"})).exit_code == 0


async def test_cancel_reaches_a_running_task(alice, start_worker):
    """Cancel of a running task: the worker learns it in a reply and kills the group."""
    await start_worker()
    task = await submit(alice, "sleep", "60")
    await wait_state(alice, task, {"running"})
    await alice.cancel_task(task)
    info = await wait_state(alice, task, {"cancelled"}, timeout=15)
    assert info.state == "cancelled"


async def test_slots_run_tasks_at_once(alice, start_worker, tmp_path):
    """--slots 4: four tasks that wait for each other all finish (a barrier of 4)."""
    await start_worker(slots=4)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    code = (
        "import os, sys, time, uuid; d = sys.argv[1];"
        "open(os.path.join(d, uuid.uuid4().hex), 'w').close();"
        "end = time.time() + 20\n"
        "while len(os.listdir(d)) < 4 and time.time() < end: time.sleep(0.02)\n"
        "sys.exit(0 if len(os.listdir(d)) >= 4 else 1)"
    )
    tasks = [await submit(alice, PY, "-c", code, str(barrier)) for _ in range(4)]
    for task in tasks:
        assert (await wait_state(alice, task, {"completed", "failed"})).state == "completed"


async def test_graceful_stop_lets_the_running_task_finish(alice, start_worker):
    daemon = await start_worker()
    task = await submit(alice, "sleep", "1")
    await wait_state(alice, task, {"running"})
    daemon.request_stop()
    await wait_state(alice, task, {"completed"})
    worker = await alice.get_worker(daemon.worker_id)
    for _ in range(100):
        if worker.state == "stopped":
            break
        await asyncio.sleep(0.05)
        worker = await alice.get_worker(daemon.worker_id)
    assert worker.state == "stopped"


async def test_stop_after_grace_requeues_the_task(alice, start_worker):
    """A task still running when the grace ends is killed and goes back to the queue."""
    daemon = await start_worker(shutdown_grace=0.2)
    task = await submit(alice, "sleep", "60")
    await wait_state(alice, task, {"running"})
    daemon.request_stop()
    info = await wait_state(alice, task, {"ready"}, timeout=15)
    assert info.attempt == 1


async def test_drain_stops_new_tasks_until_resume(alice, start_worker):
    daemon = await start_worker()
    await alice.drain_worker(daemon.worker_id)
    for _ in range(100):
        if daemon.draining:
            break
        await asyncio.sleep(0.05)
    assert daemon.draining
    task = await submit(alice, "true")
    await asyncio.sleep(1.0)
    assert (await alice.get_task(task)).state == "ready"
    await alice.resume_worker(daemon.worker_id)
    await wait_state(alice, task, {"completed"})


async def test_graceful_shutdown_order_drains_then_exits(alice, start_worker):
    daemon = await start_worker()
    task = await submit(alice, "sleep", "0.5")
    await wait_state(alice, task, {"running"})
    await alice.shutdown_worker(daemon.worker_id)
    await wait_state(alice, task, {"completed"})
    runner = start_worker.started[-1][1]
    await asyncio.wait_for(runner, timeout=15)
    assert runner.result() == 0


@pytest.mark.parametrize("object_backend", ["local", "s3"])
async def test_outputs_become_artifacts(alice, start_worker, tmp_path):
    """MITO_RESULT_DIR, MITO_EXEC_DIR and (--terminal) stdout/stderr are uploaded as tar.gz."""
    await start_worker()
    script = (
        'echo hello; echo oops >&2; echo 42 > "$MITO_RESULT_DIR/answer.txt";'
        ' echo trace > "$MITO_EXEC_DIR/trace.log"'
    )
    task = await submit(alice, "sh", "-c", script, terminal_output=True)
    await wait_state(alice, task, {"completed"})
    kinds = {a.type for a in await alice.list_artifacts(task)}
    assert kinds == {"result", "exec-log", "std-log"}
    for kind, member, content in [
        ("result", "result/answer.txt", b"42\n"),
        ("exec-log", "exec-log/trace.log", b"trace\n"),
        ("std-log", "std-log/stdout.log", b"hello\n"),
        ("std-log", "std-log/stderr.log", b"oops\n"),
    ]:
        archive = await alice.download_artifact(task, kind, tmp_path / f"{kind}.tar.gz")
        with tarfile.open(archive) as tar:
            assert tar.extractfile(member).read() == content


async def test_no_outputs_no_artifacts(alice, start_worker):
    await start_worker()
    task = await submit(alice, "true")
    await wait_state(alice, task, {"completed"})
    assert await alice.list_artifacts(task) == []


@pytest.mark.parametrize("object_backend", ["local", "s3"])
async def test_resources_arrive_before_start(alice, start_worker, tmp_path):
    """An attachment listed as a resource is in MITO_RESOURCE_DIR at its path."""
    await start_worker()
    source = tmp_path / "input.txt"
    source.write_text("payload")
    await alice.upload_attachment("alice", source, "data/input.txt")
    check = 'test "$(cat "$MITO_RESOURCE_DIR/in/x.txt")" = payload'
    spec = TaskSpec(
        command=["sh", "-c", check],
        resources=[Resource(attachment="data/input.txt", path="in/x.txt")],
    )
    task = (await alice.submit_task(spec)).uuid
    assert (await wait_state(alice, task, {"completed", "failed"})).state == "completed"


@pytest.mark.parametrize("object_backend", ["local", "s3"])
async def test_outputs_over_the_quota_fail_the_task_but_keep_its_exit_status(
    alice, admin, start_worker
):
    """A result that does not fit the group's quota is refused before a byte moves: the task
    fails with upload_failed naming the quota, keeps exit code 0, and nothing is charged."""
    await admin.change_storage_quota("alice", "=10")
    await start_worker()
    task = await submit(alice, "sh", "-c", 'echo 42 > "$MITO_RESULT_DIR/answer.txt"')
    info = await wait_state(alice, task, {"completed", "failed"})
    assert (info.state, info.reason, info.exit_code) == ("failed", "upload_failed", 0)
    assert "upload of result refused" in info.message
    assert "quota" in info.message
    assert await alice.list_artifacts(task) == []
    assert (await alice.get_group("alice")).storage_used == 0


async def test_a_missing_resource_fails_the_task_with_resource_error(alice, start_worker):
    await start_worker()
    spec = TaskSpec(
        command=["true"], resources=[Resource(attachment="data/missing.txt", path="x.txt")]
    )
    task = (await alice.submit_task(spec)).uuid
    info = await wait_state(alice, task, {"failed", "completed"})
    assert info.reason == "resource_error"
    assert "missing.txt" in info.message
    assert info.phase == "fetching"  # it got no further


async def test_a_task_too_quick_for_phase_reports_still_shows_how_far_it_got(alice, start_worker):
    """Its phases are coalesced away (the result is queued within the ride window), so the
    result carries the last one: everything done, result committed."""
    await start_worker()
    task = await submit(alice, "true")
    info = await wait_state(alice, task, {"completed"})
    assert info.phase == "committed"
    assert [attempt.phase for attempt in info.attempts] == ["committed"]


async def test_downstream_tasks_written_to_mito_new_task_run_after(alice, start_worker):
    """A task writes two specs to MITO_NEW_TASK: both are submitted, linked, and run."""
    await start_worker(slots=2)
    writer = (
        'printf \'[{"command": ["true"]}, {"command": ["sh", "-c", '
        '"test -n \\\\"$MITO_UPSTREAM_TASK_UUID\\\\""]}]\' > "$MITO_NEW_TASK"'
    )
    task = await submit(alice, "sh", "-c", writer)
    info = await wait_state(alice, task, {"completed", "failed"})
    assert info.state == "completed"
    assert len(info.downstream) == 2
    for child in info.downstream:
        done = await wait_state(alice, child, {"completed", "failed"})
        assert done.state == "completed"
        assert done.upstream == task


async def test_malformed_mito_new_task_is_recorded_not_fatal(alice, start_worker):
    daemon = await start_worker()
    task = await submit(alice, "sh", "-c", 'echo "{not json" > "$MITO_NEW_TASK"')
    info = await wait_state(alice, task, {"completed", "failed"})
    assert "downstream_submit_failed" in (info.downstream_error or "")
    assert not daemon.stop.is_set()


async def test_live_output_reaches_the_coordinator(alice, start_worker):
    """stdout/stderr lines are shipped while the task runs (X5) and kept after it ends."""
    await start_worker()
    task = await submit(alice, "sh", "-c", "echo one; echo two >&2; echo three")
    await wait_state(alice, task, {"completed"})
    lines = [line async for line in alice.follow_logs(task, follow=False)]
    assert sorted((line.stream, line.text) for line in lines) == [
        ("stderr", "two"),
        ("stdout", "one"),
        ("stdout", "three"),
    ]


async def test_after_starts_the_client_while_the_server_still_runs(alice, start_worker, tmp_path):
    """A server/client pair (T6 ``after``): the server waits for a file only its client
    writes, so it completes only if the client started while it ran."""
    await start_worker(slots=2)
    marker = tmp_path / "client-was-here"
    wait_for_client = (
        "import os, sys, time; end = time.time() + 20\n"
        "while not os.path.exists(sys.argv[1]) and time.time() < end: time.sleep(0.05)\n"
        "sys.exit(0 if os.path.exists(sys.argv[1]) else 1)"
    )
    server = await submit(alice, PY, "-c", wait_for_client, str(marker))
    client = await submit(
        alice, "touch", str(marker), depends_on=[Dependency(task=server, condition="after")]
    )
    assert (await wait_state(alice, server, {"completed", "failed"})).state == "completed"
    assert (await wait_state(alice, client, {"completed", "failed"})).state == "completed"


async def test_each_array_task_sees_its_index(alice, start_worker):
    """--array 0-2: three processes from one spec, each printing its own MITO_ARRAY_INDEX."""
    await start_worker(slots=3)
    spec = TaskSpec(command=["sh", "-c", 'echo "index=$MITO_ARRAY_INDEX"'])
    array = await alice.submit_array(spec, "0-2")
    printed = {}
    for task in array.tasks:
        info = await wait_state(alice, task, {"completed", "failed"})
        lines = [line.text async for line in alice.follow_logs(task, follow=False)]
        printed[info.array_index] = lines
    assert printed == {i: [f"index={i}"] for i in range(3)}


async def test_a_process_failing_twice_then_succeeding_completes_on_attempt_three(
    alice, start_worker
):
    """--retries 2 with a process that succeeds only on its third attempt (MITO_ATTEMPT):
    completed, with the two failures kept (T8)."""
    await start_worker()
    task = await submit(alice, "sh", "-c", 'test "$MITO_ATTEMPT" -ge 3', retries=2)
    info = await wait_state(alice, task, {"completed", "failed"})
    assert (info.state, info.attempt) == ("completed", 3)
    assert [(a.state, a.exit_code) for a in info.attempts] == [
        ("failed", 1),
        ("failed", 1),
        ("completed", 0),
    ]


async def test_short_tasks_are_reported_and_claimed_together(alice, start_worker):
    """Two slots of quick tasks: a fetch waits a moment for a result per slot, so fetches
    carry two results or more and claim as many, instead of one each."""
    tasks = [await submit(alice, "true") for _ in range(40)]
    daemon = await start_worker(slots=2)
    fetches: list[tuple[int, int]] = []  # (results carried, tasks asked for)
    fetch = daemon.client.fetch_tasks

    async def counting(worker, **request):
        fetches.append((len(request.get("results") or []), request.get("max_tasks", 1)))
        return await fetch(worker, **request)

    daemon.client.fetch_tasks = counting
    for task in tasks:
        assert (await wait_state(alice, task, {"completed", "failed"})).state == "completed"
    assert any(results >= 2 and asked >= 2 for results, asked in fetches), fetches


@pytest.fixture
def short_is_half_a_second(monkeypatch):
    """Tasks count as short below 0.5 s, so a loaded test machine's ``true`` does too (and
    held ones go back after a second without a freed slot, longer than that)."""
    monkeypatch.setattr("mitosis_worker.daemon.SHORT_RUN", 0.5)
    monkeypatch.setattr("mitosis_worker.slots.HOLD", 1.0)


@pytest.mark.usefixtures("short_is_half_a_second")
async def test_short_tasks_are_held_ahead_but_never_run_beyond_the_slots(alice, start_worker):
    """While tasks are short the worker holds more than its slots (queued, S4), yet never
    has more than its slots running; every task runs once, on its first attempt."""
    tasks = [await submit(alice, "true") for _ in range(60)]
    daemon = await start_worker(slots=2)
    most_held = most_busy = 0
    launch = daemon.slots._start

    def watching(running):
        nonlocal most_held, most_busy
        most_held = max(most_held, len(daemon.held))
        most_busy = max(most_busy, daemon.slots.busy)
        launch(running)

    daemon.slots._start = watching
    for task in tasks:
        info = await wait_state(alice, task, {"completed", "failed"})
        assert (info.state, info.attempt) == ("completed", 1)
    assert most_busy <= 2
    assert most_held > 2


@pytest.mark.usefixtures("short_is_half_a_second")
async def test_a_task_held_ahead_behind_a_long_one_is_handed_back_without_using_an_attempt(
    alice, start_worker
):
    """One slot, short tasks so far, then a long task with quick ones behind it in one
    claim: the quick ones are not kept waiting for the slot but handed back (requeued, the
    handed-back attempt not counted), and run once the slot is free."""
    daemon = await start_worker(slots=1)
    first = await submit(alice, "true")
    assert (await wait_state(alice, first, {"completed"})).attempt == 1
    batch = await alice.submit_tasks(
        [TaskSpec(command=["sleep", "2.5"])] + [TaskSpec(command=["true"])] * 2
    )
    long, *quick = [result.task.uuid for result in batch.results]
    for task in quick:
        info = await wait_state(alice, task, {"completed", "failed"}, timeout=60)
        assert (info.state, info.attempt) == ("completed", 2)
        handed_back, ran = info.attempts
        assert (handed_back.state, handed_back.reason, handed_back.phase) == (
            "requeued",
            "worker_stopped",
            "waiting",
        )
        assert "handed back unstarted: no slot freed within 1s" in handed_back.message
        assert (ran.state, ran.exit_code) == ("completed", 0)
        assert info.max_attempts == 4  # the default 3, and the one handed back
    assert (await wait_state(alice, long, {"completed"})).attempt == 1
    assert daemon.held == {}


@pytest.mark.usefixtures("short_is_half_a_second")
async def test_drain_hands_back_the_tasks_held_ahead_and_lets_the_running_one_finish(
    alice, start_worker, monkeypatch
):
    """Drain while quick tasks wait behind a running one: the running one finishes, the
    waiting ones go back at once (not after the stall), and run after resume."""
    monkeypatch.setattr("mitosis_worker.slots.HOLD", 30.0)
    daemon = await start_worker(slots=1)
    assert (await wait_state(alice, await submit(alice, "true"), {"completed"})).attempt == 1
    # Long enough for the drain to reach a worker whose only slot is busy, under load too
    # (with no slot free it does not fetch: the drain comes with a heartbeat).
    batch = await alice.submit_tasks(
        [TaskSpec(command=["sleep", "3"])] + [TaskSpec(command=["true"])] * 2
    )
    long, *quick = [result.task.uuid for result in batch.results]
    for _ in range(100):
        if len(daemon.slots) == 2:
            break
        await asyncio.sleep(0.02)
    assert len(daemon.slots) == 2  # both quick tasks wait for the slot
    await alice.drain_worker(daemon.worker_id)
    for task in quick:
        assert (await wait_state(alice, task, {"ready"}, timeout=5)).max_attempts == 4
    assert (await wait_state(alice, long, {"completed"})).attempt == 1
    await alice.resume_worker(daemon.worker_id)
    for task in quick:
        info = await wait_state(alice, task, {"completed"})
        assert info.attempt == 2
        assert "handed back unstarted: the worker is draining" in info.attempts[0].message


@pytest.mark.usefixtures("short_is_half_a_second")
async def test_a_coordinator_that_refuses_ahead_gets_fetches_for_free_slots_only(
    alice, start_worker
):
    """A coordinator from before ``ahead`` answers it with 400: the worker goes on asking
    for its free slots only, and every task still runs."""
    tasks = [await submit(alice, "true") for _ in range(20)]
    daemon = await start_worker(slots=2)
    fetch = daemon.client.fetch_tasks
    asked: list[int] = []

    async def older(worker, **request):
        asked.append(request.get("ahead", 0))
        if request.get("ahead"):
            raise errors.BadRequest("ahead: unknown field")
        return await fetch(worker, **request)

    daemon.client.fetch_tasks = older
    for task in tasks:
        assert (await wait_state(alice, task, {"completed", "failed"})).state == "completed"
    refused = asked.index(next(ahead for ahead in asked if ahead))  # asked once, refused
    after = asked[refused + 1 :]
    assert after
    assert not any(after)
