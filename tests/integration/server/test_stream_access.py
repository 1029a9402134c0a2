"""Open streams lose their right to exist with their session or their groups (issue 7, item
4), checked by one pass of :class:`StreamAccess` over every open stream, on both databases.
The streams themselves ending over HTTP are in tests/e2e/test_live_streams.py."""

from __future__ import annotations

import pytest

from mitosis_sdk.schemas import Member, Role, UserState
from mitosis_sdk.schemas.events import StreamError


async def principal_of(app, client):
    coordinator = app.state.coordinator
    return await coordinator.authenticator.authenticate(coordinator.sessions, client.token)


@pytest.fixture
def watch(app):
    """``ended = await watch(client, groups, explicit)``: a list that receives the error."""
    access = app.state.coordinator.stream_access

    async def _watch(client, groups, explicit):
        ended: list[StreamError] = []
        access.watch(await principal_of(app, client), groups, explicit, ended.append)
        return ended

    return _watch


async def test_nothing_ends_while_session_and_groups_stand(app, make_user, watch):
    """A pass over live streams leaves them open."""
    alice = await make_user("alice")
    ended = await watch(alice, {"alice"}, False)
    assert await app.state.coordinator.stream_access.check() == 0
    assert ended == []


async def test_a_logged_out_session_ends_its_streams_with_unauthorized(app, make_user, watch):
    alice = await make_user("alice")
    ended = await watch(alice, {"alice"}, True)
    await alice.logout()
    await app.state.coordinator.stream_access.check()
    assert [e.error for e in ended] == ["unauthorized"]


async def test_a_locked_user_s_streams_end_with_account_locked(app, make_user, admin, watch):
    alice = await make_user("alice")
    ended = await watch(alice, {"alice"}, False)
    await admin.set_user_state("alice", UserState.LOCKED)
    await app.state.coordinator.stream_access.check()
    assert [e.error for e in ended] == ["account_locked"]


async def test_a_group_named_by_the_stream_lost_is_forbidden(app, make_user, watch):
    """Opened for group lab (or a lab task's log): removal from lab ends it with 403."""
    alice, bob = await make_user("alice"), await make_user("bob")
    await alice.create_group("lab")
    await alice.update_members("lab", [Member(username="bob", role=Role.READ)])
    ended = await watch(bob, {"lab"}, True)
    await alice.remove_members("lab", ["bob"])
    await app.state.coordinator.stream_access.check()
    assert [(e.error, e.message) for e in ended] == [
        ("forbidden", "you no longer have access to group 'lab'")
    ]


async def test_a_change_of_my_groups_asks_an_all_groups_stream_to_reconnect(app, make_user, watch):
    """Following "all my groups": joining or leaving one ends the stream with
    access_changed, which the SDK answers by reconnecting with the new set."""
    alice, bob = await make_user("alice"), await make_user("bob")
    await alice.create_group("lab")
    ended = await watch(bob, {"bob"}, False)
    await alice.update_members("lab", [Member(username="bob", role=Role.READ)])
    await app.state.coordinator.stream_access.check()
    assert [e.error for e in ended] == ["access_changed"]
    assert app.state.coordinator.stream_access.open == 0
