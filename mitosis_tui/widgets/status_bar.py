"""The top line: coordinator, user (and admin flag), current group role, connection, the
live event stream, last update.

It only watches the app's reactive state, so whoever changes the connection, the stream or
the identity updates the bar without knowing it exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual.widgets import Static

if TYPE_CHECKING:
    from mitosis_tui.app import MitosisApp

STATE_SYMBOLS = {
    "connected": "●",
    "connecting": "◌",
    "offline": "✖",
    "logged out": "○",
}


class StatusBar(Static):
    def on_mount(self) -> None:
        app = cast("MitosisApp", self.app)
        watched = ("identity", "connection_state", "stream_state", "last_update", "group_context")
        for attribute in watched:
            self.watch(app, attribute, self._changed, init=False)
        self._changed()

    def _changed(self, _value: object = None) -> None:
        self.update(self.describe(self.size.width or 200))

    def on_resize(self) -> None:
        self._changed()

    def describe(self, width: int = 200) -> Text:
        """The bar's text; the least important parts go first when the line is too narrow."""
        app = cast("MitosisApp", self.app)
        me = app.identity
        # (priority, text): 1 always stays, higher numbers are dropped first.
        parts: list[tuple[int, Text]] = [(1, Text(app.connection.url, style="bold"))]
        if me is not None:
            user = Text(me.username)
            if me.is_admin:
                user.append(" (admin)", style="bold")
            parts.append((1, user))
        if app.group_context:
            parts.append((3, Text(f"group {app.group_context}")))
        state, stream = app.connection_state, app.stream_state
        if not (state == "connected" and stream == "live"):  # "live" says both
            symbol = STATE_SYMBOLS.get(state.split(",")[0], "•")
            parts.append((1, Text(f"{symbol} {state}", style=_state_style(state))))
        if stream == "live":
            parts.append((1, Text("◉ live", style="green")))
        elif stream:
            symbol = "✖" if stream.startswith("offline") else "◌"
            parts.append((1, Text(f"{symbol} live: {stream}", style=_state_style(stream))))
        if app.last_update is not None:
            parts.append((2, Text(f"updated {app.last_update:%H:%M:%S}", style="dim")))
        separator = Text(" │ ")
        for drop in (None, 3, 2):
            kept = [text for priority, text in parts if drop is None or priority < drop]
            line = separator.join(kept)
            if line.cell_len <= width:
                break
        return line


def _state_style(state: str) -> str:
    if state == "connected":
        return "green"
    if state.startswith("offline"):
        return "bold red"
    return "yellow"
