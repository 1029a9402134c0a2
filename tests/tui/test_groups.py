"""The Groups pane: my groups and roles, a group's details and members, member management."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Input, Select

from mitosis_sdk.schemas import Member, Role
from mitosis_tui.screens.confirm import ConfirmScreen
from mitosis_tui.screens.forms import MemberForm
from mitosis_tui.widgets.groups_pane import GroupsPane
from tests.tui.conftest import (
    SIZE,
    live,
    screen_text,
    settle,
    snapshot_app,
    until,
)


def rows(table: DataTable) -> list[list[str]]:
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


async def lab_with_members(make_user) -> None:
    """alice admins lab, where bob reads; carol exists but is not a member."""
    alice = await make_user("alice")
    await make_user("bob")
    await make_user("carol")
    await alice.create_group("lab")
    await alice.update_members("lab", [Member(username="bob", role=Role.READ)])


async def select_group(pilot, name: str) -> GroupsPane:
    """Show the Groups pane (3) and put its cursor on ``name``."""
    if pilot.app.main_screen.tabs.active != "groups":
        await pilot.press("3")
    pane = pilot.app.query_one(GroupsPane)
    await until(pilot, lambda: name in [row[0] for row in rows(pane.group_list)], what=name)
    names = [row[0] for row in rows(pane.group_list)]
    pane.group_list.move_cursor(row=names.index(name))
    await until(
        pilot,
        lambda: pane.details.group is not None and pane.details.group.name == name,
        15.0,
        f"group {name}",
    )
    await settle(pilot)
    return pane


async def test_groups_pane_lists_my_groups_and_the_selected_groups_members(
    make_tui, make_user, remember
):
    """Groups with my role on the left; the selected group's members and storage right."""
    await lab_with_members(make_user)
    await remember("alice")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        pane = await select_group(pilot, "lab")
        assert rows(pane.group_list) == [["alice", "admin"], ["lab", "admin"]]
        assert rows(pane.details.members_table) == [["alice", "admin"], ["bob", "read"]]
        text = screen_text(app)
        assert "0B of 16.0GB" in text
        assert "group lab:admin" in text  # the status bar shows my role in the group


async def test_readers_see_no_members_and_cannot_manage_them(make_tui, make_user, remember):
    """Members are for the group's admins: a reader is told so and the keys do nothing."""
    await lab_with_members(make_user)
    await remember("bob")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        pane = await select_group(pilot, "lab")
        assert pane.details.members_table.row_count == 0
        assert "Only the group's admins" in screen_text(app)
        await pilot.press("a")
        await pilot.pause()
        assert not isinstance(app.screen, MemberForm)


async def test_adding_a_member_through_the_form(make_tui, make_user, remember, connect):
    """a opens the member form; OK adds the member on the coordinator and in the table."""
    await lab_with_members(make_user)
    await remember("alice")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        pane = await select_group(pilot, "lab")
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, MemberForm), what="member form")
        await pilot.press(*"carol")
        app.screen.query_one("#member-role", Select).value = Role.WRITE
        await pilot.click("#ok")
        await until(
            pilot, lambda: pane.details.members_table.row_count == 3, what="carol in the table"
        )
        assert ["carol", "write"] in rows(pane.details.members_table)
    carol = await connect("carol", "pw")
    assert {m.group: m.role for m in await carol.my_groups()}["lab"] == Role.WRITE


async def test_invalid_member_name_is_reported_in_the_form(make_tui, make_user, remember):
    """The form checks the name before anything is sent."""
    await lab_with_members(make_user)
    await remember("alice")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select_group(pilot, "lab")
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, MemberForm), what="member form")
        app.screen.query_one("#member-user", Input).value = "no/such"
        await pilot.press("enter")
        assert isinstance(app.screen, MemberForm)
        assert "letters, digits" in str(app.screen.query_one("#form-error").render())
        await pilot.press("escape")
        assert not isinstance(app.screen, MemberForm)


async def test_removing_a_member_asks_first(make_tui, make_user, remember, connect):
    """d asks for confirmation, then removes the selected member."""
    await lab_with_members(make_user)
    await remember("alice")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        pane = await select_group(pilot, "lab")
        pane.details.members_table.move_cursor(row=1)  # bob
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        assert "Remove bob from lab?" in screen_text(app)
        await pilot.press("y")
        await until(pilot, lambda: pane.details.members_table.row_count == 1, what="bob removed")
    bob = await connect("bob", "pw")
    assert "lab" not in {m.group for m in await bob.my_groups()}


async def test_changing_a_role(make_tui, make_user, remember):
    """e opens the form for the selected member with the user fixed; the role changes."""
    await lab_with_members(make_user)
    await remember("alice")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        pane = await select_group(pilot, "lab")
        pane.details.members_table.move_cursor(row=1)  # bob
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, MemberForm), what="member form")
        assert app.screen.query_one("#member-user", Input).value == "bob"
        app.screen.query_one("#member-role", Select).value = Role.ADMIN
        await pilot.press("ctrl+s")
        await until(
            pilot,
            lambda: ["bob", "admin"] in rows(pane.details.members_table),
            what="bob is admin",
        )


async def test_the_last_admin_cannot_be_removed_and_is_told_why(make_tui, make_user, remember):
    """Removing lab's only admin shows the coordinator's message; the members stay."""
    await lab_with_members(make_user)
    await remember("alice")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        pane = await select_group(pilot, "lab")
        pane.details.members_table.move_cursor(row=0)  # alice, the only admin
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        await pilot.press("y")
        await settle(pilot)
        messages = "".join(n.message for n in app._notifications)
        assert "would have no admin left; make another member admin first" in messages
        assert rows(pane.details.members_table) == [["alice", "admin"], ["bob", "read"]]


async def test_a_reload_keeps_the_selected_group(make_tui, make_user, remember, connect):
    """The backstop reload rebuilds a changed list but stays on the group being looked at."""
    await lab_with_members(make_user)
    await remember("alice")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        pane = await select_group(pilot, "lab")
        alice = await connect("alice", "pw")
        await alice.create_group("aaa")  # sorts first: the rebuilt list moves lab down
        pane.reload()
        await until(pilot, lambda: pane.group_list.row_count == 3, what="the new group")
        await settle(pilot)
        assert pane.selected_group == "lab"
        assert pane.details.group.name == "lab"


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_groups_pane_snapshot(snap_compare, served_coordinator, tmp_path, size):
    """alice's groups, with lab selected: members, roles and storage (time frozen)."""
    app = snapshot_app(served_coordinator, tmp_path, "alice")

    async def show_lab(pilot) -> None:
        await live(pilot)
        await select_group(pilot, "lab")

    assert snap_compare(app, terminal_size=size, run_before=show_lab)
