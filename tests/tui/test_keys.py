"""Discoverability: '?' lists every binding, Ctrl+P lists every action, 1-5 and back."""

from __future__ import annotations

from textual.binding import Binding
from textual.command import CommandPalette

from mitosis_tui.palette import MitosisCommands, palette_actions
from mitosis_tui.panes import PANES
from mitosis_tui.screens.artifacts import ArtifactsScreen
from mitosis_tui.screens.help import HelpScreen
from mitosis_tui.screens.logs import LogsScreen
from mitosis_tui.screens.task_details import TaskDetailsScreen
from tests.tui.conftest import screen_text, settle, until


async def test_help_lists_every_binding(make_tui, remember):
    """? shows each pane's keys, those of task details, logs and artifacts, and the global
    ones, with their descriptions."""
    await remember("mitosis_admin", "mitosis_admin")
    app = make_tui()
    async with app.run_test(size=(110, 150)) as pilot:  # tall enough for every section
        await settle(pilot)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        await pilot.pause(0.2)  # laid out and drawn
        text = screen_text(app)
        screens = [spec.pane_class for spec in PANES]
        screens += [TaskDetailsScreen, LogsScreen, ArtifactsScreen]
        for screen in screens:
            for binding in Binding.make_bindings(screen.BINDINGS):
                assert (binding.tooltip or binding.description) in text
        for expected in ("Quit", "Command palette", "Run a batch command", "Back"):
            assert expected in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_palette_offers_every_pane_action(make_tui, remember):
    """Ctrl+P lists pane switches and every pane action; choosing one runs it."""
    await remember("mitosis_admin", "mitosis_admin")
    app = make_tui()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        titles = {action.title for action in palette_actions(app)}
        assert {"Go to Groups", "Go to Admin", "Log out", "Command line"} <= titles
        assert "Admin: Create a user and their personal group" in titles
        assert MitosisCommands in app.COMMANDS
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), what="palette")
        await pilot.press(*"go to output")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: app.main_screen.tabs.active == "output", what="output")


async def test_number_keys_switch_panes_and_q_goes_back(make_tui, remember):
    """1-5 jump to panes; q returns to the previous one; Tasks is the home pane."""
    await remember("mitosis_admin", "mitosis_admin")
    app = make_tui()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        tabs = app.main_screen.tabs
        assert tabs.active == "tasks"
        await pilot.press("3")
        await pilot.pause()
        assert tabs.active == "groups"
        await pilot.press("2")
        await pilot.pause()
        assert tabs.active == "workers"
        assert "not built yet" not in screen_text(app)
        await pilot.press("5")
        await pilot.pause()
        assert tabs.active == "output"
        await pilot.press("q")
        await pilot.pause()
        assert tabs.active == "workers"
        await pilot.press("escape")
        await pilot.pause()
        assert tabs.active == "groups"
        await pilot.press("escape")
        await pilot.pause()
        assert tabs.active == "tasks"
