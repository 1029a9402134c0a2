"""Who may follow what, across two real coordinators (issue 7, item 4; A3): a member of one
group never gets another's events or log lines, and an open stream ends within about a
second of its session being revoked or its group access lost, with a clear error."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from mitosis_sdk.client import AsyncClient
from mitosis_sdk.errors import Forbidden, NotFound, Unauthorized
from mitosis_sdk.schemas import Grant, Member, Role, TaskSpec, UserState
from tests.e2e.live import (  # noqa: F401 (pair_fixture: the `pair` fixture)
    admin_on,
    collect,
    ends_with,
    on,
    pair_fixture,
    user,
    wait_for_event,
    worker_of,
)

pytestmark = pytest.mark.slow


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
