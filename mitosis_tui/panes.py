"""The pane registry: which tabs the main screen has, their keys, and when they light up.

A pane whose coordinator API is missing from the SDK client (or whose widget is not built
yet) shows a short placeholder instead: add the widget class as ``factory`` here, and
nothing else changes (keys, palette and help all read this table).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mitosis_tui.widgets.admin_pane import AdminPane
from mitosis_tui.widgets.groups_pane import GroupsPane
from mitosis_tui.widgets.output_panel import OutputPanel
from mitosis_tui.widgets.pane import Pane
from mitosis_tui.widgets.placeholder_pane import PlaceholderPane
from mitosis_tui.widgets.tasks_pane import TasksPane
from mitosis_tui.widgets.workers_pane import WorkersPane


@dataclass(frozen=True)
class PaneSpec:
    key: str
    id: str
    title: str
    factory: Callable[..., Pane] | None = None
    needs_api: str | None = None
    admin_only: bool = False
    what: str = ""

    def api_present(self, client: object) -> bool:
        return self.needs_api is None or hasattr(client, self.needs_api)

    def is_real(self, client: object) -> bool:
        return self.factory is not None and self.api_present(client)

    def build(self, client: object) -> Pane:
        if self.factory is not None and self.api_present(client):
            return self.factory(id=f"{self.id}-pane")
        if not self.api_present(client):
            message = f"Coming with the {self.what} API."
        else:
            message = f"The {self.title} pane is not built yet."
        message += "\nMeanwhile the : command line runs every batch command."
        return PlaceholderPane(self.title, message, id=f"{self.id}-pane")

    @property
    def pane_class(self) -> type[Pane]:
        factory = self.factory
        return factory if isinstance(factory, type) else PlaceholderPane


PANES: tuple[PaneSpec, ...] = (
    PaneSpec("1", "tasks", "Tasks", TasksPane, needs_api="query_tasks", what="tasks"),
    PaneSpec("2", "workers", "Workers", WorkersPane, needs_api="query_workers", what="workers"),
    PaneSpec("3", "groups", "Groups", GroupsPane),
    PaneSpec("4", "admin", "Admin", AdminPane, admin_only=True),
    PaneSpec("5", "output", "Output", OutputPanel),
)


def pane_spec(pane_id: str) -> PaneSpec:
    return next(spec for spec in PANES if spec.id == pane_id)


def default_pane(client: object) -> str:
    """Tasks is the home pane once it exists; until then, Groups."""
    for spec in PANES:
        if spec.is_real(client) and not spec.admin_only:
            return spec.id
    return "groups"
