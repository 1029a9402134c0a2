"""Accounts and sessions (FEATURES A1-A7) through the real app, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from mitosis_sdk import errors
from mitosis_sdk.errors import ErrorCode
from mitosis_sdk.schemas import UserState
from tests.conftest import ADMIN


async def test_first_admin_exists_and_can_log_in(admin):
    """The first start creates the configured admin with a personal group."""
    me = await admin.whoami()
    assert me.username == ADMIN[0]
    assert me.is_admin
    assert [(g.group, g.role) for g in me.groups] == [(ADMIN[0], "admin")]


async def test_wrong_password_and_unknown_user_get_the_same_answer(connect, make_user):
    """Login failures say only 'wrong username or password' (A2), whoever is missing."""
    await make_user("alice", "right")
    client = await connect()
    with pytest.raises(errors.Unauthorized) as wrong:
        await client.login("alice", "wrong")
    with pytest.raises(errors.Unauthorized) as unknown:
        await client.login("nobody", "wrong")
    assert wrong.value.message == unknown.value.message == "wrong username or password"


async def test_login_failures_are_rate_limited_per_user(connect, make_user, settings):
    """After the allowed failures a user gets 429, even with the right password."""
    await make_user("alice", "right")
    client = await connect()
    for _ in range(settings.login_attempts):
        with pytest.raises(errors.Unauthorized):
            await client.login("alice", "wrong")
    with pytest.raises(errors.RateLimited) as blocked:
        await client.login("alice", "right")
    assert "try again in" in blocked.value.message


async def test_token_carries_expiry_from_config(admin, settings):
    """whoami shows when the token expires: the configured lifetime from now (A1, A5)."""
    me = await admin.whoami()
    from datetime import UTC, datetime

    remaining = (me.token_expires_at - datetime.now(UTC)).total_seconds()
    assert settings.token_lifetime - 60 < remaining <= settings.token_lifetime


async def test_logout_ends_only_this_session(make_user, connect):
    """`logout` revokes the current token; another session of the same user lives on."""
    first = await make_user("alice")
    second = await connect("alice", "pw")
    await first.request("POST", "/api/auth/logout", body={"all": False})
    with pytest.raises(errors.Unauthorized):
        await first.whoami()
    assert (await second.whoami()).username == "alice"


async def test_logout_all_ends_every_session(make_user, connect):
    """`logout --all` revokes every session of the user at once (A3)."""
    first = await make_user("alice")
    second = await connect("alice", "pw")
    await first.logout(everywhere=True)
    with pytest.raises(errors.Unauthorized):
        await second.whoami()


async def test_password_change_needs_the_old_password_and_ends_sessions(make_user, connect):
    """A wrong old password is refused; a change ends all sessions; the new one works."""
    alice = await make_user("alice", "old")
    other = await connect("alice", "old")
    with pytest.raises(errors.Forbidden):
        await alice.change_password("not-it", "new")
    await alice.change_password("old", "new")
    with pytest.raises(errors.Unauthorized):
        await other.whoami()
    fresh = await connect("alice", "new")
    assert (await fresh.whoami()).username == "alice"


async def test_admin_password_reset_ends_sessions(admin, make_user, connect):
    alice = await make_user("alice", "old")
    await admin.reset_password("alice", "new")
    with pytest.raises(errors.Unauthorized):
        await alice.whoami()
    assert (await (await connect("alice", "new")).whoami()).username == "alice"


async def test_locked_user_is_refused_at_login_and_on_every_request(admin, make_user, connect):
    """Locking ends sessions; login and requests get 403 account_locked (A4)."""
    alice = await make_user("alice")
    await admin.set_user_state("alice", UserState.LOCKED)
    with pytest.raises(errors.Unauthorized):
        await alice.whoami()
    with pytest.raises(errors.Forbidden) as refused:
        await connect("alice", "pw")
    assert refused.value.code == ErrorCode.ACCOUNT_LOCKED
    await admin.set_user_state("alice", UserState.ACTIVE)
    assert (await (await connect("alice", "pw")).whoami()).state == "active"


async def test_deleted_user_keeps_the_name_reserved(admin, make_user, connect):
    """Delete is soft: login says deleted, and the name cannot be taken again."""
    await make_user("alice")
    await admin.delete_user("alice")
    with pytest.raises(errors.Forbidden) as refused:
        await connect("alice", "pw")
    assert refused.value.code == ErrorCode.ACCOUNT_DELETED
    with pytest.raises(errors.Conflict):
        await admin.create_user("alice", "pw")
    users = {u.username: u.state for u in await admin.list_users()}
    assert users["alice"] == "deleted"


async def test_admin_cannot_lock_or_delete_themselves(admin):
    with pytest.raises(errors.Forbidden):
        await admin.set_user_state(ADMIN[0], UserState.LOCKED)
    with pytest.raises(errors.Forbidden):
        await admin.delete_user(ADMIN[0])


async def test_group_quota_operations(admin, make_user):
    """`+N`, `-N`, `=N` and `N` change the group quota; nonsense is a 400 and changes nothing."""
    await make_user("alice")
    assert (await admin.change_group_quota("alice", "+2")).group_quota == 10
    assert (await admin.change_group_quota("alice", "-3")).group_quota == 7
    assert (await admin.change_group_quota("alice", "=1")).group_quota == 1
    assert (await admin.change_group_quota("alice", "4")).group_quota == 4
    for bad in ("+x", "-99", "", "=-1", "1.5"):
        with pytest.raises(errors.BadRequest):
            await admin.change_group_quota("alice", bad)
    assert (await admin.change_group_quota("alice", "+0")).group_quota == 4


async def test_revocation_reaches_a_second_coordinator_within_a_second(
    settings, make_user, connect
):
    """Two apps over one database: a logout on one is refused on the other within 1 s (A3)."""
    import httpx
    from asgi_lifespan import LifespanManager

    from mitosis_sdk.client import AsyncClient
    from mitosis_server.app import create_app

    alice = await make_user("alice")
    other_app = create_app(settings)
    async with LifespanManager(other_app):
        replica = AsyncClient(
            "http://replica.test", alice.token, transport=httpx.ASGITransport(app=other_app)
        )
        assert (await replica.whoami()).username == "alice"
        await alice.logout()
        await asyncio.sleep(1.1)
        with pytest.raises(errors.Unauthorized):
            await replica.whoami()
        await replica.aclose()


async def test_two_coordinators_starting_at_once_share_one_first_admin(db_url, tmp_path):
    """Two replicas create the first admin at the same moment: one wins, both come up."""
    from mitosis_server.app import _first_admin
    from mitosis_server.config import CoordinatorSettings
    from mitosis_server.db.engine import create_engine, session_factory

    settings = CoordinatorSettings(data_dir=str(tmp_path), db=db_url)
    engines = [create_engine(db_url) for _ in range(2)]
    try:
        results = await asyncio.gather(
            *(_first_admin(session_factory(engine), settings) for engine in engines)
        )
    finally:
        for engine in engines:
            await engine.dispose()
    assert sorted(created for created, _ in results) == [False, True]
