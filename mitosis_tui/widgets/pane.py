"""The base of every tabbed pane: how a pane loads its data and reaches the app.

A pane loads lazily (when first shown), reloads on ``r`` and on the app's backstop timer,
and forgets its data when the user logs out. Subclasses implement :meth:`load` (start a
worker) and :meth:`clear`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar, cast

from textual.containers import Vertical
from textual.widget import Widget

if TYPE_CHECKING:
    from mitosis_tui.app import MitosisApp


class Pane(Vertical):
    """One tab of the main screen."""

    TITLE: ClassVar[str] = ""
    loads_data: ClassVar[bool] = True

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="pane")
        self.loaded_at: float | None = None

    @property
    def mitosis(self) -> MitosisApp:
        return cast("MitosisApp", self.app)

    def reload(self) -> None:
        """Fetch this pane's data again (in a worker, never blocking the UI)."""
        if self.loads_data and self.mitosis.identity is not None:
            self.loaded_at = time.monotonic()
            self.load()

    def reload_if_stale(self, max_age: float) -> None:
        if self.loaded_at is None or time.monotonic() - self.loaded_at > max_age:
            self.reload()

    def load(self) -> None:
        """Start the worker that fetches the data."""

    def clear(self) -> None:
        """Forget what was shown (the user logged out or changed)."""
        self.loaded_at = None

    def focus_target(self) -> Widget | None:
        """Where the pane's keys work: its first focusable widget, unless it says otherwise."""
        return next((widget for widget in self.query("*") if widget.focusable), None)

    def focus_default(self) -> None:
        """Focus :meth:`focus_target` now. ``Widget.focus`` would wait for the app's next
        turn, and a key typed right after the one that showed the pane (``1`` then ``n``)
        would still go to the pane left behind."""
        target = self.focus_target()
        if target is not None:
            self.screen.set_focus(target)
