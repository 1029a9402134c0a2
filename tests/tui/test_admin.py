"""The Admin pane (Mitosis admins only): create users, lock and unlock, quotas."""

from __future__ import annotations

import pytest
from textual.widgets import Checkbox, Input

from mitosis_sdk import errors
from mitosis_sdk.schemas import UserState
from mitosis_tui.screens.confirm import ConfirmScreen
from mitosis_tui.screens.forms import PasswordForm, QuotaForm, UserForm
from mitosis_tui.widgets.admin_pane import AdminPane
from tests.tui.conftest import SIZE, screen_text, settle, until
from tests.tui.test_groups import rows


async def open_admin_pane(pilot) -> AdminPane:
    await settle(pilot)
    await pilot.press("4")
    pane = pilot.app.query_one(AdminPane)
    await until(pilot, lambda: pane.table.row_count > 0, what="users table")
    return pane


def notes(app) -> str:
    return "\n".join(n.message for n in app._notifications)


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


async def test_admin_resets_a_password(make_tui, remember, make_user, connect):
    """p asks twice; the user's new password works and the old one does not."""
    await make_user("erin")
    await remember("mitosis_admin", "mitosis_admin")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_admin_pane(pilot)
        select_user(pane, "erin")
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, PasswordForm), what="password form")
        app.screen.query_one("#new-password", Input).value = "fresh-pw"
        app.screen.query_one("#new-password-again", Input).value = "fresh-pw"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "Password of erin changed" in notes(app)
    assert (await (await connect("erin", "fresh-pw")).whoami()).username == "erin"
    with pytest.raises(errors.Unauthorized):
        await connect("erin", "pw")


async def test_admin_deletes_a_user_after_a_confirmation(make_tui, remember, make_user, admin):
    """d asks first; yes deletes the user (soft: shown as deleted)."""
    await make_user("erin")
    await remember("mitosis_admin", "mitosis_admin")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_admin_pane(pilot)
        select_user(pane, "erin")
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        assert "Delete erin?" in app.screen.question
        await pilot.press("y")
        await until(pilot, lambda: "✗ deleted" in screen_text(app), what="erin deleted")
    assert {u.username: u.state for u in await admin.list_users()}["erin"] == UserState.DELETED


async def test_group_quota_changes_are_checked_then_applied(make_tui, remember, make_user, admin):
    """g refuses a malformed change in the form (the parser's words), then applies +2."""
    await make_user("erin")
    await remember("mitosis_admin", "mitosis_admin")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_admin_pane(pilot)
        select_user(pane, "erin")
        await pilot.press("g")
        await until(pilot, lambda: isinstance(app.screen, QuotaForm), what="quota form")
        app.screen.query_one("#quota-change", Input).value = "+two"
        await pilot.press("enter")
        assert "expected +N, -N, =N or N" in str(app.screen.query_one("#form-error").render())
        app.screen.query_one("#quota-change", Input).value = "+2"
        await pilot.press("enter")
        shown = ["erin", "", "● active", "0/10"]
        await until(pilot, lambda: shown in [row[:4] for row in rows(pane.table)], what="+2")
    assert {u.username: u.group_quota for u in await admin.list_users()}["erin"] == 10


async def test_a_malformed_storage_quota_is_explained_in_the_form(make_tui, remember):
    """s with '=lots' stays open and names the accepted sizes."""
    await remember("mitosis_admin", "mitosis_admin")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        await open_admin_pane(pilot)
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, QuotaForm), what="quota form")
        app.screen.query_one("#quota-change", Input).value = "=lots"
        await pilot.press("enter")
        assert isinstance(app.screen, QuotaForm)
        assert "SIZE like 500MB or 2GiB" in str(app.screen.query_one("#form-error").render())
