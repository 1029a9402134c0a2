"""Tasks through the real app on SQLite and PostgreSQL (FEATURES T1-T3, T5, T9, T10, V)."""

from __future__ import annotations

import uuid

import pytest

from mitosis_sdk import errors
from mitosis_sdk.schemas import (
    Dependency,
    Member,
    Resource,
    Role,
    TaskChange,
    TaskFilter,
    TaskQuery,
    TaskSort,
    TaskSpec,
    TaskState,
)
from mitosis_sdk.schemas.limits import MAX_BATCH
from tests.integration.server.fleet import spec, start_worker


@pytest.fixture
async def alice(make_user):
    client = await make_user("alice")
    await client.create_group("lab")
    return client


async def test_submit_numbers_tasks_per_group_and_defaults_to_the_personal_group(alice):
    """No group means the caller's personal group; numbers count per group from 1 (T2)."""
    first = await alice.submit_task(spec("echo", "1"))
    second = await alice.submit_task(spec("echo", "2"))
    in_lab = await alice.submit_task(spec("echo", "3", group="lab"))
    assert [(t.group, t.seq) for t in (first, second, in_lab)] == [
        ("alice", 1),
        ("alice", 2),
        ("lab", 1),
    ]
    info = await alice.get_task(first.uuid)
    assert info.state == TaskState.READY
    assert (info.creator, info.timeout, info.priority, info.attempt) == ("alice", 600.0, 0, 0)
    assert info.max_attempts == 3


async def test_submit_keeps_the_whole_spec(alice):
    """Every T1 field given is stored and shown back by `get`."""
    submitted = await alice.submit_task(
        TaskSpec(
            command=["python", "train.py", "--seed", "1"],
            group="lab",
            tags=["gpu"],
            labels=["exp1", "seed1"],
            env={"SEED": "1"},
            timeout="1h30m",
            priority=7,
            terminal_output=True,
            resources=[Resource(attachment="data/x.tar.gz", path="x.tar.gz")],
        )
    )
    info = await alice.get_task(submitted.uuid)
    assert info.command == ["python", "train.py", "--seed", "1"]
    assert (info.tags, info.labels, info.env) == (["gpu"], ["exp1", "seed1"], {"SEED": "1"})
    assert (info.timeout, info.priority, info.terminal_output) == (5400.0, 7, True)
    assert info.resources[0].attachment == "data/x.tar.gz"


async def test_batch_answers_each_spec_or_none_with_all_or_nothing(alice):
    """A batch refuses only the bad specs; all-or-nothing refuses the whole batch (T2)."""
    specs = [spec("true"), spec("true", group="nowhere"), spec("true", group="lab")]
    reply = await alice.submit_tasks(specs)
    assert (reply.submitted, reply.failed) == (2, 1)
    assert reply.results[1].error.error == "not_found"
    assert "tasks[1]" in reply.results[1].error.message
    with pytest.raises(errors.NotFound) as refused:
        await alice.submit_tasks(specs, all_or_nothing=True)
    assert "tasks[1]" in refused.value.message
    assert (await alice.query_tasks()).total == 2


async def test_every_query_filter_selects_exactly_its_tasks(alice, make_user, transport):
    """Group, creator, states, tags ⊇, labels ⊇, exit code, priority, worker, text (T5)."""
    bob = await make_user("bob")
    await alice.update_members("lab", [Member(username="bob", role=Role.WRITE)])
    a = await alice.submit_task(spec("train", "--lr", "0.1", group="lab", tags=["gpu", "big"]))
    b = await bob.submit_task(spec("eval", group="lab", tags=["gpu"], labels=["x", "y"]))
    c = await alice.submit_task(spec("train", "--lr", "0.2", priority=5, labels=["x"]))
    worker = await start_worker(bob, transport, groups={"lab": Role.WRITE})
    claimed = await worker.fetch(max_tasks=1)  # a: as urgent as b, and older
    await worker.finish(claimed[0], exit_code=3)

    async def found(**conditions) -> set:
        page = await alice.query_tasks(TaskQuery(**conditions))
        assert page.total == len(page.tasks)
        return {t.uuid for t in page.tasks}

    assert await found() == {a.uuid, b.uuid, c.uuid}
    assert await found(group="lab") == {a.uuid, b.uuid}
    assert await found(creators=["bob"]) == {b.uuid}
    assert await found(states=[TaskState.FAILED]) == {a.uuid}
    assert await found(states=[TaskState.READY, TaskState.FAILED]) == {a.uuid, b.uuid, c.uuid}
    assert await found(tags=["gpu"]) == {a.uuid, b.uuid}
    assert await found(tags=["gpu", "big"]) == {a.uuid}
    assert await found(labels=["x"]) == {b.uuid, c.uuid}
    assert await found(labels=["x", "y"]) == {b.uuid}
    assert await found(exit_code="!=0") == {a.uuid}
    assert await found(exit_code="=0") == set()
    assert await found(priority=">=5") == {c.uuid}
    assert await found(priority="<5") == {a.uuid, b.uuid}
    assert await found(worker=uuid.UUID(worker.uuid)) == {a.uuid}
    assert await found(text="--lr 0.2") == {c.uuid}
    assert await found(text="%") == set()
    assert await found(uuids=[b.uuid]) == {b.uuid}


async def test_pages_follow_a_stable_cursor_while_tasks_arrive(alice):
    """Newest first; the cursor neither repeats nor skips while new tasks arrive (T5)."""
    reply = await alice.submit_tasks([spec("echo", str(i), priority=i % 3) for i in range(7)])
    submitted = [item.task.uuid for item in reply.results]
    first = await alice.query_tasks(TaskQuery(limit=3))
    assert first.total == 7
    assert [t.uuid for t in first.tasks] == submitted[::-1][:3]
    await alice.submit_task(spec("echo", "late"))
    seen = [t.uuid for t in first.tasks]
    cursor = first.next_cursor
    while cursor:
        page = await alice.query_tasks(TaskQuery(limit=3, cursor=cursor))
        seen += [t.uuid for t in page.tasks]
        cursor = page.next_cursor
    assert seen == submitted[::-1]
    by_priority = await alice.query_tasks(TaskQuery(sort=TaskSort.PRIORITY, limit=4))
    rest = await alice.query_tasks(
        TaskQuery(sort=TaskSort.PRIORITY, limit=10, cursor=by_priority.next_cursor)
    )
    priorities = [t.priority for t in by_priority.tasks + rest.tasks]
    assert (priorities, len(priorities)) == (sorted(priorities, reverse=True), 8)
    with pytest.raises(errors.BadRequest):
        await alice.query_tasks(TaskQuery(cursor=by_priority.next_cursor))


async def test_cancel_by_uuid_list_and_filter_leaves_finished_tasks(alice, transport):
    """Cancel works on queued tasks; finished ones are reported unchanged (T9)."""
    done, queued, other = (await alice.submit_tasks([spec("a"), spec("b"), spec("c")])).results
    worker = await start_worker(alice, transport)
    await worker.finish((await worker.fetch())[0])
    reply = await alice.cancel_tasks([done.task.uuid, queued.task.uuid])
    assert reply.cancelled == [queued.task.uuid]
    assert [(r.uuid, r.state) for r in reply.unchanged] == [(done.task.uuid, "completed")]
    info = await alice.get_task(queued.task.uuid)
    assert (info.state, info.reason, info.cancelled_by) == ("cancelled", "cancelled", "alice")
    with pytest.raises(errors.Conflict):
        await alice.cancel_task(queued.task.uuid)
    by_filter = await alice.cancel_tasks(task_filter=TaskFilter(group="alice"))
    assert by_filter.cancelled == [other.task.uuid]
    with pytest.raises(errors.BadRequest):
        await alice.request("POST", "/api/tasks/cancel", body={"filter": {}})


async def test_cancel_by_filter_moves_more_tasks_than_a_statement_can_bind(alice):
    """A filter matching more tasks than the drivers' 32,767 bound values: every one is
    cancelled, and a dependent elsewhere learns its upstream never completes (T9, T6). It
    was a 500."""
    upstream = await alice.submit_task(spec("up"))
    dependent = await alice.submit_task(
        spec("down", group="lab", depends_on=[Dependency(task=upstream.uuid)])
    )
    many = 33_000
    for start in range(0, many, MAX_BATCH):
        await alice.submit_tasks([spec("x")] * min(MAX_BATCH, many - start))
    reply = await alice.cancel_tasks(task_filter=TaskFilter(group="alice"))
    assert len(set(reply.cancelled)) == many + 1
    assert (await alice.query_tasks(TaskQuery(states=["ready"]))).total == 0
    down = await alice.get_task(dependent.uuid)
    assert (down.state, down.reason) == ("failed", "dependency_never_satisfied")


async def test_change_edits_queued_tasks_only(alice, transport):
    """Tags, timeout, priority and command of a queued task change; a running one is 409."""
    task = await alice.submit_task(spec("old", tags=["a"]))
    changed = await alice.change_task(
        task.uuid, TaskChange(command=["new", "x y"], tags=["b"], timeout="5m", priority=3)
    )
    assert (changed.command, changed.tags, changed.timeout, changed.priority) == (
        ["new", "x y"],
        ["b"],
        300.0,
        3,
    )
    assert (await alice.query_tasks(TaskQuery(tags=["b"]))).total == 1
    assert (await alice.query_tasks(TaskQuery(text="x y"))).total == 1
    worker = await start_worker(alice, transport)
    await worker.fetch()
    with pytest.raises(errors.Conflict) as refused:
        await alice.change_task(task.uuid, TaskChange(priority=1))
    assert "running" in refused.value.message


async def test_labels_of_any_task_can_be_replaced(alice, transport):
    """Labels are replaced wholesale, also on finished tasks (T10)."""
    task = await alice.submit_task(spec("x", labels=["a"]))
    worker = await start_worker(alice, transport)
    await worker.finish((await worker.fetch())[0], exit_code=1)
    assert (await alice.update_task_labels(task.uuid, ["b", "c"])).labels == ["b", "c"]
    assert (await alice.query_tasks(TaskQuery(labels=["c"]))).total == 1
    assert (await alice.update_task_labels(task.uuid, [])).labels == []


BAD_SPECS = {
    "unknown group": ({"command": ["x"], "group": "nowhere"}, 404, "nowhere"),
    "read role only": ({"command": ["x"], "group": "lab"}, 403, "write"),
    "33 tags": ({"command": ["x"], "tags": [f"t{i}" for i in range(33)]}, 400, "tags"),
    "33 labels": ({"command": ["x"], "labels": [f"l{i}" for i in range(33)]}, 400, "labels"),
    "257 env entries": ({"command": ["x"], "env": {f"V{i}": "1" for i in range(257)}}, 400, "env"),
    "env over 64 KiB": ({"command": ["x"], "env": {"BIG": "x" * 70_000}}, 400, "env"),
    "argv over 64 KiB": ({"command": ["x", "y" * 70_000]}, 400, "command"),
    "duration 10x": ({"command": ["x"], "timeout": "10x"}, 400, "timeout"),
    "negative timeout": ({"command": ["x"], "timeout": -5}, 400, "timeout"),
    "absurd timeout": ({"command": ["x"], "timeout": "400d"}, 400, "timeout"),
    "empty command": ({"command": []}, 400, "command"),
    "unknown field": ({"command": ["x"], "colour": "red"}, 400, "colour"),
    "reserved env": ({"command": ["x"], "env": {"MITO_TASK_UUID": "1"}}, 400, "MITO_"),
    "tag with space": ({"command": ["x"], "tags": ["a b"]}, 400, "tags"),
    "dependencies": (
        {"command": ["x"], "depends_on": [{"task": str(uuid.uuid4())}]},
        400,
        "depends_on",
    ),
}


async def test_bad_specs_get_a_clear_4xx_and_change_nothing(make_user, alice):
    """Each rule of FEATURES V is named in the refusal; no task is created."""
    reader = await make_user("reader")
    await alice.update_members("lab", [Member(username="reader", role=Role.READ)])
    outcomes = {}
    for name, (body, _, words) in BAD_SPECS.items():
        response = await reader._http.post("/api/tasks", json=body, headers=reader._headers())
        outcomes[name] = (response.status_code, words in response.json()["message"])
    assert outcomes == {name: (status, True) for name, (_, status, _) in BAD_SPECS.items()}
    too_many = {"tasks": [{"command": ["x"]}] * 10_001}
    response = await reader._http.post("/api/tasks/batch", json=too_many, headers=reader._headers())
    assert (response.status_code, "tasks" in response.json()["message"]) == (400, True)
    assert (await alice.query_tasks()).total == 0
    response = await alice._http.get("/api/tasks/not-a-uuid", headers=alice._headers())
    assert response.status_code in (400, 404)
