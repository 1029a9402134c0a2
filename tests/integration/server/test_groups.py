"""Groups and members (FEATURES G1-G4), including every refusal, on both databases."""

from __future__ import annotations

import pytest

from mitosis_sdk import errors
from mitosis_sdk.schemas import Member, Role


async def test_creator_becomes_admin_and_sees_members(make_user):
    alice = await make_user("alice")
    group = await alice.create_group("lab")
    assert (group.creator, group.my_role, group.personal) == ("alice", "admin", False)
    assert [(m.username, m.role) for m in group.members] == [("alice", "admin")]


async def test_members_without_admin_role_do_not_see_the_member_list(make_user):
    """G2: members with roles are shown to group admins only."""
    alice = await make_user("alice")
    bob = await make_user("bob")
    await alice.create_group("lab")
    await alice.update_members("lab", [Member(username="bob", role=Role.WRITE)])
    seen = await bob.get_group("lab")
    assert seen.my_role == "write"
    assert seen.members is None


async def test_my_groups_lists_roles(make_user):
    """G4: the personal group plus every membership, with the role in each."""
    alice = await make_user("alice")
    bob = await make_user("bob")
    await alice.create_group("lab")
    await alice.update_members("lab", [Member(username="bob", role=Role.READ)])
    assert [(g.group, g.role) for g in await bob.my_groups()] == [("bob", "admin"), ("lab", "read")]


async def test_group_quota_bounds_creation(admin, make_user):
    """G1: a user creates at most group_quota groups (the personal one does not count)."""
    alice = await make_user("alice")
    await admin.change_group_quota("alice", "=1")
    await alice.create_group("one")
    with pytest.raises(errors.QuotaExceeded) as refused:
        await alice.create_group("two")
    assert "quota" in refused.value.message
    await admin.change_group_quota("alice", "+1")
    await alice.create_group("two")


async def test_names_are_one_namespace(admin, make_user):
    """A group cannot take a user's name, nor a user a group's."""
    alice = await make_user("alice")
    with pytest.raises(errors.Conflict):
        await alice.create_group("alice")
    await alice.create_group("lab")
    with pytest.raises(errors.Conflict):
        await admin.create_user("lab", "pw")
    with pytest.raises(errors.Conflict):
        await alice.create_group("lab")


async def test_last_admin_cannot_be_demoted_or_removed(make_user):
    """G3: the group always keeps an admin; the refused change leaves roles as they were."""
    alice = await make_user("alice")
    bob = await make_user("bob")
    await alice.create_group("lab")
    with pytest.raises(errors.Conflict) as demote:
        await alice.update_members("lab", [Member(username="alice", role=Role.WRITE)])
    assert "no admin left" in demote.value.message
    with pytest.raises(errors.Conflict):
        await alice.remove_members("lab", ["alice"])
    await alice.update_members(
        "lab",
        [Member(username="bob", role=Role.ADMIN), Member(username="alice", role=Role.READ)],
    )
    roles = {m.username: m.role for m in (await bob.get_group("lab")).members}
    assert roles == {"alice": "read", "bob": "admin"}


async def test_member_updates_are_all_or_nothing(make_user):
    """One unknown user in the list: nobody is added."""
    alice = await make_user("alice")
    await make_user("bob")
    await alice.create_group("lab")
    with pytest.raises(errors.NotFound):
        await alice.update_members(
            "lab",
            [Member(username="bob", role=Role.READ), Member(username="ghost", role=Role.READ)],
        )
    assert [m.username for m in (await alice.get_group("lab")).members] == ["alice"]


async def test_removing_yourself_returns_nothing(make_user):
    """A group admin who leaves (another admin staying) gets an empty answer, not a 404."""
    alice = await make_user("alice")
    await make_user("bob")
    await alice.create_group("lab")
    await alice.update_members("lab", [Member(username="bob", role=Role.ADMIN)])
    assert await alice.remove_members("lab", ["alice"]) is None
    with pytest.raises(errors.NotFound):
        await alice.get_group("lab")


async def test_storage_quota_edits(admin, make_user):
    """A new group gets the default 16 GB (F4); admins set, add and refuse bad edits."""
    alice = await make_user("alice")
    await alice.create_group("lab")
    assert (await alice.get_group("lab")).storage_quota == 16 * 10**9
    assert (await admin.change_storage_quota("lab", "=500MiB")).storage_quota == 500 * 2**20
    assert (
        await admin.change_storage_quota("lab", "+2GB")
    ).storage_quota == 500 * 2**20 + 2 * 10**9
    with pytest.raises(errors.BadRequest):
        await admin.change_storage_quota("lab", "+x")
    with pytest.raises(errors.BadRequest):
        await admin.change_storage_quota("lab", "-1TB")
    with pytest.raises(errors.NotFound):
        await admin.change_storage_quota("nope", "1GB")


BAD_NAMES = ["", "a/b", "with space", "x" * 65, "dots.too", "ünï", "semi;colon"]


@pytest.mark.parametrize("name", BAD_NAMES)
async def test_bad_names_are_refused_with_the_rule(admin, name):
    """Over-long names, '/', spaces and other characters: 400 naming the rule."""
    with pytest.raises(errors.BadRequest) as refused:
        await admin.create_user(name, "pw")
    assert "letters, digits" in refused.value.message or "length" in refused.value.message
    with pytest.raises(errors.BadRequest):
        await admin.create_group(name)
    assert [u.username for u in await admin.list_users()] == ["mitosis_admin"]


async def test_malformed_json_and_unknown_fields(admin):
    """Broken JSON and unknown fields are 400 with a message, never a 500."""
    response = await admin._http.post(
        "/api/groups",
        content=b"{not json",
        headers={**admin._headers(), "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_input"
    response = await admin._http.post(
        "/api/groups", json={"name": "lab", "colour": "red"}, headers=admin._headers()
    )
    assert response.status_code == 400
    assert "colour" in response.json()["message"]


async def test_bad_role_is_refused(make_user):
    alice = await make_user("alice")
    await alice.create_group("lab")
    response = await alice._http.post(
        "/api/groups/lab/members",
        json={"members": [{"username": "alice", "role": "owner"}]},
        headers=alice._headers(),
    )
    assert response.status_code == 400
    assert "role" in response.json()["message"]
