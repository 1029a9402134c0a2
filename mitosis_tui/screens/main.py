"""The main screen: status bar, the tabbed panes of the registry, the ``:`` command line.

It routes keys to panes (``1``-``5``, Ctrl+R/F5 reload, ``q``/Esc back) and follows the
app's identity: when someone logs in the admin tab appears or hides and the visible pane
reloads; when the session ends every pane forgets its data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, TabbedContent, TabPane

from mitosis_sdk.schemas import WhoAmI
from mitosis_tui.panes import PANES, default_pane, pane_spec
from mitosis_tui.widgets.command_line import CommandLine
from mitosis_tui.widgets.groups_pane import GroupsPane
from mitosis_tui.widgets.output_panel import OutputPanel
from mitosis_tui.widgets.pane import Pane
from mitosis_tui.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from mitosis_tui.app import MitosisApp

HISTORY_LIMIT = 50


class MainScreen(Screen[None]):
    BINDINGS = [
        *(Binding(spec.key, f"show_pane('{spec.id}')", spec.title, show=False) for spec in PANES),
        Binding("colon", "command_line", "Command", key_display=":", tooltip="Run a batch command"),
        Binding("ctrl+r,f5", "refresh", "Refresh", show=False, tooltip="Reload the visible pane"),
        Binding("q,escape", "back", "Back", show=False, tooltip="Back to the previous pane"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.history: list[str] = []
        self._current = ""
        self._initial = ""
        self._going_back = False

    @property
    def mitosis(self) -> MitosisApp:
        return cast("MitosisApp", self.app)

    def compose(self) -> ComposeResult:
        client = self.mitosis.connection.client
        self._initial = default_pane(client)
        yield StatusBar(id="status-bar")
        with TabbedContent(id="panes", initial=self._initial):
            for spec in PANES:
                with TabPane(f"{spec.key} {spec.title}", id=spec.id):
                    yield spec.build(client)
        yield CommandLine()
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.watch(self.mitosis, "identity", self._identity_changed)

    # -- panes ---------------------------------------------------------------------------

    @property
    def tabs(self) -> TabbedContent:
        return self.query_one("#panes", TabbedContent)

    @property
    def output(self) -> OutputPanel:
        return self.query_one(OutputPanel)

    def pane(self, pane_id: str) -> Pane:
        return self.query_one(f"#{pane_id}-pane", Pane)

    @property
    def active_pane(self) -> Pane:
        # The tabs activate their first tab a moment after mounting; until then (when a
        # quick reload timer may already fire) the pane on show is the initial one.
        return self.pane(self.tabs.active or self._initial)

    def _allowed(self, pane_id: str) -> bool:
        me = self.mitosis.identity
        return not pane_spec(pane_id).admin_only or (me is not None and me.is_admin)

    def action_show_pane(self, pane_id: str) -> None:
        if not self._allowed(pane_id):
            self.notify("The Admin pane is for Mitosis admins.", severity="warning")
            return
        self.tabs.active = pane_id
        self.pane(pane_id).focus_default()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.tabbed_content.id != "panes":
            return
        pane_id = event.pane.id or ""
        if self._current and self._current != pane_id and not self._going_back:
            self.history = [*self.history, self._current][-HISTORY_LIMIT:]
        self._current, self._going_back = pane_id, False
        self.active_pane.reload_if_stale(self.mitosis.refresh_interval)

    def run_pane_action(self, pane_id: str, action: str) -> None:
        """Show a pane and run one of its actions (the palette's way into pane keys)."""
        if not self._allowed(pane_id):
            self.notify("That action is for Mitosis admins.", severity="warning")
            return
        self.action_show_pane(pane_id)
        self.call_after_refresh(self.pane(pane_id).run_action, action)

    def action_refresh(self) -> None:
        self.active_pane.reload()

    def refresh_all(self) -> None:
        """Reload the visible pane now and the others when next shown."""
        for spec in PANES:
            self.pane(spec.id).loaded_at = None
        self.active_pane.reload()

    def action_back(self) -> None:
        command_line = self.query_one(CommandLine)
        if command_line.is_open:
            command_line.close()
            self.active_pane.focus_default()
            return
        while self.history:
            pane_id = self.history.pop()
            if pane_id != self.tabs.active and self._allowed(pane_id):
                self._going_back = True
                self.tabs.active = pane_id
                self.pane(pane_id).focus_default()
                return
        self.notify("Press Ctrl+C or type :quit to exit.", timeout=3)

    # -- identity ------------------------------------------------------------------------

    def _identity_changed(self, me: WhoAmI | None) -> None:
        tabs = self.tabs
        if me is not None and me.is_admin:
            tabs.show_tab("admin")
        else:
            tabs.hide_tab("admin")
            if tabs.active == "admin":
                tabs.active = default_pane(self.mitosis.connection.client)
        if me is None:
            for spec in PANES:
                self.pane(spec.id).clear()
            self.mitosis.group_context = ""
            return
        self.refresh_all()
        self.active_pane.focus_default()

    def on_groups_pane_group_selected(self, event: GroupsPane.GroupSelected) -> None:
        group = event.group
        role = group.my_role if group is not None else None
        self.mitosis.group_context = f"{group.name}:{role or '-'}" if group else ""

    # -- command line --------------------------------------------------------------------

    def action_command_line(self) -> None:
        self.query_one(CommandLine).open()

    def on_command_line_run(self, event: CommandLine.Run) -> None:
        self.mitosis.run_command_line(event.text)

    def on_command_line_closed(self, _event: CommandLine.Closed) -> None:
        self.active_pane.focus_default()
