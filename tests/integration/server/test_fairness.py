"""Fairness between groups at equal priority (FEATURES S6), on SQLite and PostgreSQL: one
group's flood does not starve another, and priority (S2) still comes first."""

from __future__ import annotations

import pytest

from mitosis_sdk.schemas import Role
from tests.integration.server.fleet import spec, start_worker


@pytest.fixture
async def alice(make_user):
    client = await make_user("alice")
    await client.create_group("lab")
    return client


async def _submit(client, group: str, count: int, **fields) -> set:
    reply = await client.submit_tasks([spec(group, group=group, **fields)] * count)
    return {item.task.uuid for item in reply.results}


async def _claim_order(worker, claims: int, max_tasks: int = 1) -> list:
    order = []
    for _ in range(claims):
        tasks = await worker.fetch(max_tasks=max_tasks)
        order.append([t.task for t in tasks])
        for task in tasks:
            await worker.finish(task)
    return order


async def test_a_flood_does_not_starve_another_group(alice, transport):
    """Group A queues 1,000 tasks, then group B queues 10: B's tasks are claimed within the
    next 20 claims, taking turns with A's."""
    flood = await _submit(alice, "alice", 1000)
    few = await _submit(alice, "lab", 10)
    worker = await start_worker(alice, transport, groups={"lab": Role.WRITE})
    order = [task for (task,) in await _claim_order(worker, 20)]
    assert set(order) & few == few
    assert len(set(order) & flood) == 10
    turns = ["B" if task in few else "A" for task in order]
    assert turns == ["A", "B"] * 10


async def test_priority_comes_before_turns(alice, transport):
    """A higher-priority task goes first whatever its group; turns order equal priorities."""
    low = await _submit(alice, "alice", 3)
    urgent = await _submit(alice, "alice", 2, priority=5)
    other = await _submit(alice, "lab", 2)
    worker = await start_worker(alice, transport, groups={"lab": Role.WRITE})
    order = [task for (task,) in await _claim_order(worker, 7)]
    assert set(order[:2]) == urgent
    assert set(order[2:]) == low | other
    assert set(order[2:4]) & other  # the other group gets a turn at once at priority 0


async def test_a_claim_of_many_takes_one_group_then_fills_in_order(alice, transport):
    """Round-robin is per claim: 8 at a time take the turn's group first, then fill with the
    rest in priority and age order; the next claim starts with the other group."""
    flood = await _submit(alice, "alice", 30)
    few = await _submit(alice, "lab", 3)
    worker = await start_worker(alice, transport, slots=8, groups={"lab": Role.WRITE})
    first, second = await _claim_order(worker, 2, max_tasks=8)
    assert len(first) == len(second) == 8
    assert set(first) <= flood
    assert set(second) & few == few


async def test_two_workers_share_between_groups(alice, transport):
    """Two workers claiming alternately still serve both groups about equally."""
    flood = await _submit(alice, "alice", 200)
    few = await _submit(alice, "lab", 200)
    workers = [await start_worker(alice, transport, groups={"lab": Role.WRITE}) for _ in range(2)]
    taken = []
    for _ in range(20):
        for worker in workers:
            (task,) = await worker.fetch()
            taken.append(task.task)
        for worker in workers:
            for held in list(worker.held.values()):
                await worker.finish(held)
    assert abs(len(set(taken) & flood) - len(set(taken) & few)) <= 2
