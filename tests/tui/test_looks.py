"""How the client looks: themes chosen from the palette, and monochrome with ``NO_COLOR``."""

from __future__ import annotations

from textual.command import CommandPalette

from mitosis_sdk.schemas import TaskSpec
from tests.tui.conftest import open_tasks, screen_text, until


async def test_the_palette_changes_the_theme(alice_tasks, lab):
    """Ctrl+P, "theme", then a theme's name: the whole client switches to it."""
    async with alice_tasks() as (pilot, _pane):
        app = pilot.app
        assert app.theme != "nord"
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), what="palette")
        await pilot.press(*"theme")
        await until(pilot, lambda: "Change the current theme" in screen_text(app), what="hit")
        await pilot.press("enter")
        await until(pilot, lambda: "Search for themes" in screen_text(app), what="themes")
        await pilot.press(*"nord")
        await pilot.pause(0.3)  # the palette searches in the background
        await pilot.press("enter")
        await until(pilot, lambda: app.theme == "nord", what="the nord theme")
        await until(pilot, lambda: not isinstance(app.screen, CommandPalette), what="closed")


async def test_no_color_draws_the_cursor_row_reversed(make_tui, remember, monkeypatch, lab):
    """With NO_COLOR the client draws in shades of grey, and the Tasks table's cursor row is
    reversed, so it does not rest on a background shade alone; states keep their symbols."""
    await lab.submit_task(TaskSpec(command=["true"], group="lab"))
    monkeypatch.setenv("NO_COLOR", "1")
    await remember("alice")
    app = make_tui()
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await open_tasks(pilot)
        assert app.no_color
        await until(pilot, lambda: pane.window.total == 1, what="the task")
        assert pane.table.has_focus
        cursor = pane.table.get_component_rich_style("task-table--cursor")
        assert cursor.reverse
        assert "○ ready" in screen_text(app)
