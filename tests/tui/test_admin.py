"""The Admin pane (Mitosis admins only): create users, lock and unlock, quotas."""

from __future__ import annotations

from textual.widgets import Checkbox, Input

from mitosis_sdk.schemas import UserState
from mitosis_tui.screens.confirm import ConfirmScreen
from mitosis_tui.screens.forms import QuotaForm, UserForm
from mitosis_tui.widgets.admin_pane import AdminPane
from tests.tui.conftest import SIZE, screen_text, settle, until
from tests.tui.test_groups import rows


async def open_admin_pane(pilot) -> AdminPane:
    await settle(pilot)
    await pilot.press("4")
    pane = pilot.app.query_one(AdminPane)
    await until(pilot, lambda: pane.table.row_count > 0, what="users table")
    return pane


def select_user(pane: AdminPane, username: str) -> None:
    names = [row[0] for row in rows(pane.table)]
    pane.table.move_cursor(row=names.index(username))


async def test_admin_creates_a_user(make_tui, remember, connect):
    """n opens the user form; the new user appears in the table and can log in."""
    await remember("mitosis_admin", "mitosis_admin")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_admin_pane(pilot)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, UserForm), what="user form")
        app.screen.query_one("#user-name", Input).value = "dave"
        app.screen.query_one("#user-password", Input).value = "s3cret"
        assert app.screen.query_one("#user-admin", Checkbox).value is False
        await pilot.click("#ok")
        await until(pilot, lambda: "dave" in [r[0] for r in rows(pane.table)], what="dave")
        assert "Created user dave" in "".join(n.message for n in app._notifications)
    dave = await connect("dave", "s3cret")
    assert (await dave.whoami()).username == "dave"


async def test_admin_locks_and_unlocks_a_user(make_tui, remember, make_user, admin):
    """l locks the selected user after a confirmation, and unlocks them without one."""
    await make_user("erin")
    await remember("mitosis_admin", "mitosis_admin")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_admin_pane(pilot)
        select_user(pane, "erin")
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        await pilot.press("y")
        await until(pilot, lambda: "⊘ locked" in screen_text(app), what="erin locked")
        assert {u.username: u.state for u in await admin.list_users()}["erin"] == "locked"
        select_user(pane, "erin")
        await pilot.press("l")
        await until(pilot, lambda: "⊘ locked" not in screen_text(app), what="erin unlocked")
    assert {u.username: u.state for u in await admin.list_users()}["erin"] == UserState.ACTIVE


async def test_admin_changes_a_group_storage_quota(make_tui, remember, make_user, admin):
    """s asks for a group and a change, and the coordinator applies it."""
    await make_user("erin")
    await remember("mitosis_admin", "mitosis_admin")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_admin_pane(pilot)
        select_user(pane, "erin")
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, QuotaForm), what="quota form")
        assert app.screen.query_one("#quota-subject", Input).value == "erin"
        app.screen.query_one("#quota-change", Input).value = "=1GB"
        await pilot.press("ctrl+s")
        await settle(pilot)
    assert (await admin.get_group("erin")).storage_quota == 10**9


async def test_admin_pane_is_hidden_from_other_users(make_tui, remember, make_user):
    """For a user who is not a Mitosis admin, 4 explains instead of opening the pane."""
    await make_user("alice")
    await remember("alice")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "4 Admin" not in screen_text(app)
        await pilot.press("4")
        await pilot.pause()
        assert app.main_screen.tabs.active == "tasks"  # the home pane stays
        assert "for Mitosis admins" in "".join(n.message for n in app._notifications)
