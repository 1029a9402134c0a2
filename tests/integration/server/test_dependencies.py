"""Dependencies (FEATURES T6) and retries (T8) through the real app, on SQLite and PostgreSQL,
driven by the miniature worker of ``fleet``."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import pytest
from sqlalchemy import func, select, update

from mitosis_sdk import errors
from mitosis_sdk.schemas import Dependency, Member, Role, TaskPhase, TaskQuery, TaskState
from mitosis_server.db.models import Task, TaskAttempt, TaskDependency
from mitosis_server.services.task_queries import MAX_DEPENDENTS
from tests.integration.server.fleet import spec, start_worker


@pytest.fixture
async def alice(make_user):
    return await make_user("alice")


def after(upstream, condition: str) -> list[Dependency]:
    return [Dependency(task=upstream.uuid, condition=condition)]


async def run_one(worker, exit_code: int | None = 0, **result):
    (claimed,) = await worker.fetch()
    await worker.finish(claimed, exit_code=exit_code, **result)
    return claimed


async def state(client, task) -> str:
    return (await client.get_task(task.uuid)).state


# (condition, how the upstream ends, what the dependent becomes)
CASES = [
    ("afterok", "completed", "ready"),
    ("afterok", "failed", "failed"),
    ("afterok", "cancelled", "failed"),
    ("afternotok", "completed", "failed"),
    ("afternotok", "failed", "ready"),
    ("afternotok", "cancelled", "ready"),
    ("afterany", "completed", "ready"),
    ("afterany", "failed", "ready"),
    ("afterany", "cancelled", "ready"),
    ("after", "completed", "ready"),
    ("after", "failed", "ready"),
    ("after", "cancelled", "ready"),
]


async def test_each_condition_against_each_ending(alice, transport):
    """Dependents stay pending until their upstream ends, then become ready or fail with
    ``dependency_never_satisfied`` naming it, per condition and ending (T6)."""
    ups = {ending: await alice.submit_task(spec(ending)) for ending in ("completed", "failed")}
    downs = {}
    for condition, ending, _ in CASES:
        if ending != "cancelled":
            down = await alice.submit_task(spec("d", depends_on=after(ups[ending], condition)))
            assert down.state == TaskState.PENDING
            downs[condition, ending] = down
    ups["cancelled"] = await alice.submit_task(spec("cancelled"))
    for condition, ending, _ in CASES:
        if ending == "cancelled":
            downs[condition, ending] = await alice.submit_task(
                spec("d", depends_on=after(ups[ending], condition))
            )
    await alice.cancel_task(ups["cancelled"].uuid)
    worker = await start_worker(alice, transport)
    await run_one(worker, exit_code=0)
    await run_one(worker, exit_code=3)
    for condition, ending, expected in CASES:
        info = await alice.get_task(downs[condition, ending].uuid)
        assert (condition, ending, info.state) == (condition, ending, expected)
        if expected == "failed":
            assert info.reason == "dependency_never_satisfied"
            assert str(ups[ending].uuid) in info.message


async def test_after_starts_the_dependent_while_the_upstream_runs(alice, transport):
    """``after``: the client starts once the server's process has spawned (T6)."""
    server = await alice.submit_task(spec("server"))
    client = await alice.submit_task(spec("client", depends_on=after(server, "after")))
    worker = await start_worker(alice, transport, slots=2)
    (claimed,) = await worker.fetch(max_tasks=2)
    assert claimed.task == server.uuid
    await worker.client.report_phase(worker.uuid, server.uuid, 1, TaskPhase.FETCHING)
    assert await state(alice, client) == "pending"
    await worker.client.report_phase(worker.uuid, server.uuid, 1, TaskPhase.SPAWNED)
    (second,) = await worker.fetch()
    assert second.task == client.uuid
    assert await state(alice, server) == "running"


@pytest.mark.parametrize("move", ["spawned", "completed"])
async def test_a_dependency_committed_while_the_upstream_moves_is_not_lost(
    app, alice, transport, move
):
    """Race: a submission share-locks the upstream and commits a dependency on it while the
    upstream's report (``spawned`` for ``after``, its result for ``afterok``) waits for
    that lock. The report's UPDATE reads with its own older snapshot (PostgreSQL), so
    whether the upstream has dependents is asked after it: the dependent is released now,
    not never."""
    server = await alice.submit_task(spec("server"))
    other = await alice.submit_task(spec("other"))
    client = await alice.submit_task(spec("client", depends_on=after(other, "afterok")))
    worker = await start_worker(alice, transport, slots=2)
    (claimed,) = await worker.fetch()
    assert claimed.task == server.uuid
    condition = "after" if move == "spawned" else "afterok"
    if move == "spawned":
        report = worker.client.report_phase(worker.uuid, server.uuid, 1, TaskPhase.SPAWNED)
    else:
        report = worker.client.report_result(worker.uuid, server.uuid, 1, exit_code=0)
    async with app.state.coordinator.sessions.begin() as db:  # the submission, in flight
        ids = dict((await db.execute(select(Task.uuid, Task.id))).all())
        locking = select(Task.id).where(Task.id == ids[server.uuid]).with_for_update(read=True)
        await db.execute(locking)
        await db.execute(
            update(TaskDependency)
            .where(TaskDependency.task_id == ids[client.uuid])
            .values(upstream_id=ids[server.uuid], condition=condition)
        )
        reporting = asyncio.create_task(report)
        await asyncio.sleep(0.5)  # the report waits for the lock (PostgreSQL) or the writer
    await reporting
    assert await state(alice, client) == "ready"


async def test_a_chain_of_three_runs_in_order_and_a_cancel_fails_it_transitively(alice, transport):
    """a → b → c run in order; cancelling the head of another chain fails all afterok
    dependents below it (T9)."""
    a = await alice.submit_task(spec("a"))
    b = await alice.submit_task(spec("b", depends_on=after(a, "afterok")))
    c = await alice.submit_task(spec("c", depends_on=after(b, "afterok")))
    worker = await start_worker(alice, transport)
    order = [(await run_one(worker)).task for _ in range(3)]
    assert order == [a.uuid, b.uuid, c.uuid]
    x = await alice.submit_task(spec("x"))
    y = await alice.submit_task(spec("y", depends_on=after(x, "afterok")))
    z = await alice.submit_task(spec("z", depends_on=after(y, "afterok")))
    await alice.cancel_task(x.uuid)
    assert [await state(alice, t) for t in (y, z)] == ["failed", "failed"]
    assert str(y.uuid) in (await alice.get_task(z.uuid)).message


COPIED_COLUMNS = ("group_id", "creator_id", "state", "priority", "command", "command_line")
COPIED_COLUMNS += ("tags", "labels", "spec", "timeout", "retries", "max_attempts", "attempt")


async def _lengthen_chain(app, tail: uuid.UUID, count: int) -> uuid.UUID:
    """``count`` more pending tasks after ``tail``, each needing the one before (afterok),
    written straight into the database: a thousand submits would cost half a minute."""
    async with app.state.coordinator.sessions() as db:
        last = await db.scalar(select(Task).where(Task.uuid == tail))
        copied = {c: getattr(last, c) for c in COPIED_COLUMNS}
        tasks = [Task(**copied, uuid=uuid.uuid4(), seq=last.seq + n) for n in range(1, count + 1)]
        db.add_all(tasks)
        await db.flush()
        chain = [last, *tasks]
        db.add_all(
            TaskDependency(task_id=t.id, upstream_id=u.id, condition="afterok")
            for u, t in itertools.pairwise(chain)
        )
        await db.commit()
        return tasks[-1].uuid


async def test_a_cancel_fails_a_chain_of_any_depth(alice, app):
    """1,005 tasks each needing the one before (deeper than the 1,000 levels the settling
    once stopped at): cancelling the head fails every one of them in that one request, none
    left pending for a next transition that never comes."""
    head = await alice.submit_task(spec("head"))
    second = await alice.submit_task(spec("x", depends_on=after(head, "afterok")))
    last = await _lengthen_chain(app, second.uuid, 1004)
    assert (await alice.query_tasks(TaskQuery(states=[TaskState.PENDING]))).total == 1005
    await alice.cancel_task(head.uuid)
    assert (await alice.get_task(last)).state == TaskState.FAILED
    assert (await alice.query_tasks(TaskQuery(states=[TaskState.PENDING]))).total == 0


async def test_a_diamond_waits_for_both_upstreams(alice, transport):
    """d depends on b and c, both on a: d starts only after both end (T6)."""
    a = await alice.submit_task(spec("a"))
    b = await alice.submit_task(spec("b", depends_on=after(a, "afterok")))
    c = await alice.submit_task(spec("c", depends_on=after(a, "afterok")))
    deps = [Dependency(task=b.uuid), Dependency(task=c.uuid, condition="afterany")]
    d = await alice.submit_task(spec("d", depends_on=deps))
    worker = await start_worker(alice, transport)
    await run_one(worker)
    await run_one(worker)
    assert await state(alice, d) == "pending"
    await run_one(worker, exit_code=1)
    assert await state(alice, d) == "ready"


async def test_get_lists_the_dependents_of_a_diamond_with_their_conditions(alice):
    """a fans out to b, c and e; d joins b and c: each task lists the tasks waiting on it,
    in submission order, with the condition each waits under (T6, C1)."""
    a = await alice.submit_task(spec("a"))
    b = await alice.submit_task(spec("b", depends_on=after(a, "afterok")))
    c = await alice.submit_task(spec("c", depends_on=after(a, "afternotok")))
    deps = [Dependency(task=b.uuid), Dependency(task=c.uuid, condition="afterany")]
    d = await alice.submit_task(spec("d", depends_on=deps))
    e = await alice.submit_task(spec("e", depends_on=after(a, "after")))

    async def dependents(task) -> tuple[list[tuple[uuid.UUID, str]], int]:
        info = await alice.get_task(task.uuid)
        return [(x.task, x.condition) for x in info.dependents], info.dependents_total

    assert await dependents(a) == (
        [(b.uuid, "afterok"), (c.uuid, "afternotok"), (e.uuid, "after")],
        3,
    )
    assert await dependents(b) == ([(d.uuid, "afterok")], 1)
    assert await dependents(c) == ([(d.uuid, "afterany")], 1)
    assert await dependents(d) == ([], 0)


async def test_a_dependent_in_a_group_the_reader_cannot_read_is_not_shown(alice, make_user, admin):
    """Bob reads lab and makes a task in his own group wait on a lab task: alice, who cannot
    read bob's group, sees neither its UUID nor a count that includes it; bob and a Mitosis
    admin see both dependents."""
    await alice.create_group("lab")
    bob = await make_user("bob")
    await alice.update_members("lab", [Member(username="bob", role=Role.READ)])
    up = await alice.submit_task(spec("up", group="lab"))
    hers = await alice.submit_task(spec("hers", group="lab", depends_on=after(up, "afterok")))
    his = await bob.submit_task(spec("his", depends_on=after(up, "afterany")))
    shown = {}
    for name, client in (("alice", alice), ("bob", bob), ("admin", admin)):
        info = await client.get_task(up.uuid)
        shown[name] = ([x.task for x in info.dependents], info.dependents_total)
    assert shown == {
        "alice": ([hers.uuid], 1),
        "bob": ([hers.uuid, his.uuid], 2),
        "admin": ([hers.uuid, his.uuid], 2),
    }
    raw = await alice._http.get(f"/api/tasks/{up.uuid}", headers=alice._headers())
    assert str(his.uuid) not in raw.text


async def test_get_lists_the_first_dependents_and_counts_them_all(alice):
    """A task with more dependents than a reply lists: the first ones by submission, and the
    total (T6, C1)."""
    up = await alice.submit_task(spec("up"))
    many = await alice.submit_tasks(
        [spec("d", depends_on=after(up, "afterok"))] * (MAX_DEPENDENTS + 5)
    )
    info = await alice.get_task(up.uuid)
    submitted = [item.task.uuid for item in many.results]
    assert [x.task for x in info.dependents] == submitted[:MAX_DEPENDENTS]
    assert info.dependents_total == MAX_DEPENDENTS + 5


async def test_a_dependency_already_met_or_never_met_is_decided_at_submit(alice, transport):
    """A dependency on a finished task is settled at once (T6)."""
    up = await alice.submit_task(spec("up"))
    worker = await start_worker(alice, transport)
    await run_one(worker)
    ok = await alice.submit_task(spec("ok", depends_on=after(up, "afterok")))
    never = await alice.submit_task(spec("never", depends_on=after(up, "afternotok")))
    assert (ok.state, never.state) == (TaskState.READY, TaskState.FAILED)


async def test_missing_and_unreadable_dependencies_are_refused(alice, make_user):
    """A missing UUID and another group's task look alike: refused, nothing created."""
    bob = await make_user("bob")
    hidden = await bob.submit_task(spec("secret"))
    for target in (uuid.uuid4(), hidden.uuid):
        with pytest.raises(errors.BadRequest) as caught:
            await alice.submit_task(spec("x", depends_on=[Dependency(task=target)]))
        assert str(target) in str(caught.value)
    assert (await alice.query_tasks()).total == 0


async def test_a_cycle_or_a_self_dependency_cannot_be_made(alice):
    """Dependencies are fixed at submit and name existing tasks only: a change adding one
    (a → b → a) and a spec choosing its own UUID to depend on are refused, nothing changes."""
    a = await alice.submit_task(spec("a"))
    b = await alice.submit_task(spec("b", depends_on=after(a, "afterok")))
    loop = {"depends_on": [{"task": str(b.uuid), "condition": "afterok"}]}
    refusals = [
        await alice._http.patch(f"/api/tasks/{a.uuid}", json=loop, headers=alice._headers()),
        await alice._http.post(
            f"/api/tasks/{a.uuid}/rerun", json={"change": loop}, headers=alice._headers()
        ),
    ]
    me = str(uuid.uuid4())
    itself = {"uuid": me, "command": ["x"], "depends_on": [{"task": me}]}
    refusals.append(await alice._http.post("/api/tasks", json=itself, headers=alice._headers()))
    refusals.append(
        await alice._http.post(
            "/api/tasks",
            json={"command": ["x"], "depends_on": [{"task": me}]},
            headers=alice._headers(),
        )
    )
    words = [
        "unknown field `depends_on`",
        "change: Object contains unknown field `depends_on`",
        "unknown field `uuid`",
        f"task {me} does not exist or you cannot read it",
    ]
    assert [
        (r.status_code, w in r.json()["message"]) for r, w in zip(refusals, words, strict=True)
    ] == [(400, True)] * 4
    assert (await alice.get_task(a.uuid)).depends_on == []
    assert (await alice.query_tasks()).total == 2


BAD_WORKFLOW_SPECS = {
    "retries -1": ({"retries": -1}, "retries"),
    "retries 101": ({"retries": 101}, "retries"),
    "retry delay 5x": ({"retries": 1, "retry_delay": "5x"}, "retry_delay"),
    "unknown condition": (
        {"depends_on": [{"task": str(uuid.uuid4()), "condition": "soon"}]},
        "condition",
    ),
    "a task named twice": (
        {"depends_on": [{"task": "6f1e0a4c-3b7e-4d5a-9a3e-2f1c0b9d8e7f"}] * 2},
        "depends_on",
    ),
    "a missing task": ({"depends_on": [{"task": str(uuid.uuid4())}]}, "depends_on"),
}


async def test_bad_workflow_input_is_400_naming_it_and_creates_nothing(alice):
    """Retries out of 0–100, a bad delay, an unknown condition, a task named twice or
    missing: the API refuses each with a 400 naming the field, alone, in an all-or-nothing
    batch and in an array, and no task exists afterwards (V)."""
    outcomes = {}
    for name, (fields, words) in BAD_WORKFLOW_SPECS.items():
        body = {"command": ["x"], **fields}
        for path, payload in (
            ("/api/tasks", body),
            ("/api/tasks/batch", {"tasks": [{"command": ["ok"]}, body], "all_or_nothing": True}),
            ("/api/tasks/array", {"spec": body, "array": "0-9"}),
        ):
            reply = await alice._http.post(path, json=payload, headers=alice._headers())
            message = reply.json()["message"]
            outcomes[name, path] = (reply.status_code, words in message)
    assert outcomes == {key: (400, True) for key in outcomes}
    assert (await alice.query_tasks()).total == 0


async def test_a_task_failing_twice_then_succeeding_completes_with_three_attempts(alice, transport):
    """retries=2: two failures requeue it, the third attempt's success is final; every
    attempt is kept with its worker, times and outcome (T8)."""
    task = await alice.submit_task(spec("flaky", retries=2))
    worker = await start_worker(alice, transport)
    await run_one(worker, exit_code=1)
    assert await state(alice, task) == "ready"
    await run_one(worker, exit_code=None, signal=15, reason="timeout")
    await run_one(worker, exit_code=0)
    info = await alice.get_task(task.uuid)
    assert (info.state, info.attempt, info.exit_code) == ("completed", 3, 0)
    assert [(a.attempt, a.state, a.reason, a.exit_code) for a in info.attempts] == [
        (1, "failed", "nonzero_exit", 1),
        (2, "failed", "timeout", None),
        (3, "completed", None, 0),
    ]
    assert {str(a.worker) for a in info.attempts} == {worker.uuid}
    for earlier, later in zip(info.attempts, info.attempts[1:], strict=False):
        assert earlier.started_at <= earlier.ended_at <= later.started_at <= later.ended_at


async def test_retries_run_out_and_the_last_failure_stands(alice, transport):
    """retries=1: the second failure is final; a backoff holds the retry back (T8)."""
    task = await alice.submit_task(spec("bad", retries=1, retry_delay="1h"))
    worker = await start_worker(alice, transport)
    await run_one(worker, exit_code=4)
    assert await state(alice, task) == "ready"
    assert await worker.fetch() == []  # not before an hour has passed
    no_delay = await alice.submit_task(spec("bad", retries=1))
    await run_one(worker, exit_code=4)
    await run_one(worker, exit_code=5)
    info = await alice.get_task(no_delay.uuid)
    assert (info.state, info.exit_code, len(info.attempts)) == ("failed", 5, 2)


async def test_dependents_of_a_retried_task_wait_for_its_last_attempt(alice, transport):
    """A failed attempt that is retried is not the task's end: its afterok and afternotok
    dependents stay pending through it and follow the final attempt (T6, T8)."""
    flaky = await alice.submit_task(spec("flaky", retries=1))
    on_success = await alice.submit_task(spec("next", depends_on=after(flaky, "afterok")))
    on_failure = await alice.submit_task(spec("alert", depends_on=after(flaky, "afternotok")))
    worker = await start_worker(alice, transport)
    await run_one(worker, exit_code=1)
    assert [await state(alice, t) for t in (on_success, on_failure)] == ["pending", "pending"]
    await run_one(worker, exit_code=0)
    assert [await state(alice, t) for t in (on_success, on_failure)] == ["ready", "failed"]


async def retry_wait(app, task) -> float:
    """Seconds between the end of the task's last attempt and its earliest next claim."""
    async with app.state.coordinator.sessions() as db:
        row = (
            await db.execute(
                select(Task.not_before, func.max(TaskAttempt.ended_at))
                .join(TaskAttempt, TaskAttempt.task_id == Task.id)
                .where(Task.uuid == task.uuid)
                .group_by(Task.id)
            )
        ).one()
        await db.execute(update(Task).where(Task.uuid == task.uuid).values(not_before=None))
        await db.commit()
    return (row[0] - row[1]).total_seconds()


async def test_the_retry_delay_doubles_with_each_retry(app, alice, transport):
    """retry_delay=1h: the first retry waits an hour after the failure, the second two
    (read from the task's row, then lifted so the test can go on); explain says why (T8)."""
    task = await alice.submit_task(spec("flaky", retries=3, retry_delay="1h"))
    worker = await start_worker(alice, transport)
    waits = []
    for _ in range(2):
        await run_one(worker, exit_code=1)
        explained = await alice.explain_task(task.uuid)
        assert explained.summary.startswith("BeginTime: retry not before")
        assert [r.blocked_by for r in explained.workers] == [["retry_backoff"]]
        waits.append(round(await retry_wait(app, task)))
    assert waits == [3600, 7200]
    await run_one(worker, exit_code=0)
    assert await state(alice, task) == "completed"


async def test_failures_other_than_exit_or_timeout_are_not_retried(alice, transport):
    """A resource error is final even with retries left: retrying cannot fix the spec (T8)."""
    task = await alice.submit_task(spec("x", retries=5))
    worker = await start_worker(alice, transport)
    await run_one(worker, exit_code=None, reason="resource_error", message="no such file")
    info = await alice.get_task(task.uuid)
    assert (info.state, info.reason, len(info.attempts)) == ("failed", "resource_error", 1)
