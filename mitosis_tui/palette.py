"""Ctrl+P: a command palette provider listing every action of the app by name.

Pane actions come from the pane registry and each pane's ``BINDINGS``, so a new pane's keys
appear here with no extra code; choosing one shows the pane and runs the action.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider

from mitosis_tui.panes import PANES
from mitosis_tui.screens.main import MainScreen

if TYPE_CHECKING:
    from mitosis_tui.app import MitosisApp


@dataclass(frozen=True)
class PaletteAction:
    title: str
    help: str
    run: Callable[[], object]


def palette_actions(app: MitosisApp) -> Iterator[PaletteAction]:
    yield PaletteAction("Help: all keys", "Show every key binding (?)", app.action_help)
    yield PaletteAction("Quit Mitosis", "Exit the client (Ctrl+C or :quit)", app.exit)
    main = next((s for s in app.screen_stack if isinstance(s, MainScreen)), None)
    if main is None or app.identity is None:
        return
    yield PaletteAction("Log out", "End this session and show the login screen", app.action_logout)
    yield PaletteAction("Command line", "Run a batch command (:)", main.action_command_line)
    refresh = next(b for b in Binding.make_bindings(MainScreen.BINDINGS) if b.action == "refresh")
    keys = app.get_key_display(refresh)
    yield PaletteAction("Refresh", f"Reload the visible pane ({keys})", main.action_refresh)
    admin = app.identity.is_admin
    for spec in PANES:
        if spec.admin_only and not admin:
            continue
        yield PaletteAction(
            f"Go to {spec.title}",
            f"Show the {spec.title} pane ({spec.key})",
            partial(main.action_show_pane, spec.id),
        )
        if spec.factory is None:
            continue
        for binding in Binding.make_bindings(spec.pane_class.BINDINGS):
            if not binding.description:
                continue
            yield PaletteAction(
                f"{spec.title}: {binding.tooltip or binding.description}",
                f"key {app.get_key_display(binding)} in the {spec.title} pane",
                partial(main.run_pane_action, spec.id, binding.action),
            )


def _unique(actions: Iterator[PaletteAction]) -> list[PaletteAction]:
    seen: set[str] = set()
    found = []
    for action in actions:
        if action.title not in seen:
            seen.add(action.title)
            found.append(action)
    return found


class MitosisCommands(Provider):
    @property
    def actions(self) -> list[PaletteAction]:
        return _unique(palette_actions(cast("MitosisApp", self.app)))

    async def discover(self) -> Hits:
        for action in self.actions:
            yield DiscoveryHit(action.title, action.run, help=action.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for action in self.actions:
            score = matcher.match(action.title)
            if score > 0:
                yield Hit(score, matcher.highlight(action.title), action.run, help=action.help)
