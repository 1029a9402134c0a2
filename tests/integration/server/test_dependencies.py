"""Dependencies (FEATURES T6) and retries (T8) through the real app, on SQLite and PostgreSQL,
driven by the miniature worker of ``fleet``."""

from __future__ import annotations

import uuid

import pytest

from mitosis_sdk import errors
from mitosis_sdk.schemas import Dependency, TaskPhase, TaskState
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


async def test_bad_dependency_input_is_refused():
    """Unknown conditions and a task named twice fail validation (V)."""
    import msgspec

    from mitosis_sdk.schemas import TaskSpec

    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(
            {"command": ["x"], "depends_on": [{"task": str(uuid.uuid4()), "condition": "soon"}]},
            TaskSpec,
        )
    same = str(uuid.uuid4())
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(
            {"command": ["x"], "depends_on": [{"task": same}, {"task": same}]}, TaskSpec
        )
    for retries in (-1, 101):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert({"command": ["x"], "retries": retries}, TaskSpec)


async def test_a_task_failing_twice_then_succeeding_completes_with_three_attempts(alice, transport):
    """retries=2: two failures requeue it, the third attempt's success is final (T8)."""
    task = await alice.submit_task(spec("flaky", retries=2))
    worker = await start_worker(alice, transport)
    await run_one(worker, exit_code=1)
    assert await state(alice, task) == "ready"
    await run_one(worker, exit_code=None, signal=15, reason="timeout")
    await run_one(worker, exit_code=0)
    info = await alice.get_task(task.uuid)
    assert (info.state, info.attempt) == ("completed", 3)
    assert [(a.attempt, a.state) for a in info.attempts] == [
        (1, "failed"),
        (2, "failed"),
        (3, "completed"),
    ]


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
