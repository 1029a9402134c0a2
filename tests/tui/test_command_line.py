"""The ':' command line runs the batch grammar (the same code as --batch) into the panel;
the Output pane's snapshots."""

from __future__ import annotations

import pytest

from mitosis_tui.screens.login import LoginScreen
from mitosis_tui.widgets.command_line import CommandLine
from mitosis_tui.widgets.output_panel import OutputPanel
from tests.tui.conftest import SIZE, live, screen_text, settle, snapshot_app, until


async def run(pilot, command: str, *, type_keys: bool = False) -> OutputPanel:
    """Open the command line with ':', enter ``command`` (key by key with ``type_keys``)."""
    await pilot.press("colon")
    command_line = pilot.app.query_one(CommandLine)
    assert command_line.has_focus
    if type_keys:
        await pilot.press(*command)
    else:
        command_line.value = command
    await pilot.press("enter")
    await settle(pilot)
    return pilot.app.query_one(OutputPanel)


async def test_groups_get_shows_the_batch_output(make_tui, remember, make_user):
    """`groups get lab` prints exactly what --batch prints, in the Output pane."""
    alice = await make_user("alice")
    await alice.create_group("lab")
    await remember("alice")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        panel = await run(pilot, "groups get lab", type_keys=True)
        assert app.main_screen.tabs.active == "output"
        assert panel.transcript[0] == ": groups get lab"
        assert "name      lab" in panel.transcript
        assert "members   alice:admin" in panel.transcript
        assert "creator   alice" in screen_text(app)


async def test_a_failing_command_shows_the_error_and_status(make_tui, remember):
    """Errors come through as the batch mode words them, with the exit status."""
    await remember("mitosis_admin", "mitosis_admin")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        panel = await run(pilot, "groups get nope")
        assert any(line.startswith("error: ") for line in panel.transcript)
        assert "(exit status 4)" in panel.transcript
        panel = await run(pilot, "frobnicate")
        assert "(exit status 2)" in panel.transcript


async def test_login_without_a_password_does_not_prompt(make_tui, remember):
    """The command line never reads a password from the terminal Textual owns."""
    await remember("mitosis_admin", "mitosis_admin")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        panel = await run(pilot, "login mitosis_admin")
        assert any("cannot ask for a password" in line for line in panel.transcript)


async def test_logout_command_returns_to_the_login_screen(make_tui, remember):
    """`:logout` ends the TUI's own session."""
    await remember("mitosis_admin", "mitosis_admin")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await run(pilot, "logout")
        await until(pilot, lambda: isinstance(app.screen, LoginScreen), what="login screen")


async def test_quit_exits(make_tui, remember):
    """`:quit` leaves the app."""
    await remember("mitosis_admin", "mitosis_admin")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await run(pilot, "quit")
    assert app.return_code == 0


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_output_pane_snapshot(snap_compare, served_coordinator, tmp_path, size):
    """The Output pane (5) after two commands: one that worked, one that failed in red with
    its exit status; the command line closed again."""
    app = snapshot_app(served_coordinator, tmp_path, "alice")

    async def two_commands(pilot) -> None:
        await live(pilot)
        await run(pilot, "groups update-user lab carol:write")  # carol writes already
        await run(pilot, "groups get nope")
        await until(pilot, lambda: "(exit status 4)" in screen_text(pilot.app), what="drawn")

    assert snap_compare(app, terminal_size=size, run_before=two_commands)
