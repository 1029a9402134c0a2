"""``?``: every key of the app, by where it works, read from the bindings themselves.

The sections come from the classes' ``BINDINGS`` (app, main screen, each pane of the
registry, task details, logs, artifacts, the command line, forms), so the help can never
drift from what the keys do.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from mitosis_tui.panes import PANES
from mitosis_tui.screens.artifacts import ArtifactsScreen
from mitosis_tui.screens.confirm import ConfirmScreen
from mitosis_tui.screens.forms import FormScreen
from mitosis_tui.screens.logs import LogsScreen
from mitosis_tui.screens.main import MainScreen
from mitosis_tui.screens.task_details import TaskDetailsScreen
from mitosis_tui.widgets.command_line import CommandLine
from mitosis_tui.widgets.log_view import LogView

Section = tuple[str, list[tuple[str, str]]]


def describe_bindings(app: App, bindings: Iterable[BindingType]) -> list[tuple[str, str]]:
    """(keys, description) rows; keys bound to the same action share one row."""
    rows: dict[tuple[str, str], list[str]] = {}
    for binding in Binding.make_bindings(bindings):
        if not binding.description:
            continue
        text = binding.tooltip or binding.description
        rows.setdefault((binding.action, text), []).append(app.get_key_display(binding))
    return [(", ".join(keys), description) for (_, description), keys in rows.items()]


def key_sections(app: App) -> list[Section]:
    sections: list[Section] = [
        (
            "Everywhere",
            [
                *describe_bindings(app, type(app).BINDINGS),
                (app.get_key_display(Binding(app.COMMAND_PALETTE_BINDING, "")), "Command palette"),
            ],
        ),
        (
            "Main screen",
            [
                ("1 … 5", "Tasks, Workers, Groups, Admin, Output pane"),
                *describe_bindings(
                    app, [b for b in MainScreen.BINDINGS if "show_pane" not in b.action]
                ),
            ],
        ),
    ]
    for spec in PANES:
        pane_bindings = describe_bindings(app, spec.pane_class.BINDINGS)
        if pane_bindings and spec.factory is not None:
            sections.append((f"{spec.title} pane", pane_bindings))
    for title, screen in (
        ("Task details", TaskDetailsScreen),
        ("Logs view", LogsScreen),
        ("Artifacts", ArtifactsScreen),
    ):
        sections.append((title, describe_bindings(app, screen.BINDINGS)))
    sections.append(("Logs view: scrolling", describe_bindings(app, LogView.BINDINGS)))
    sections.append(
        (
            "Command line",
            [("enter", "Run the command"), *describe_bindings(app, CommandLine.BINDINGS)],
        )
    )
    sections.append(
        (
            "Forms and dialogs",
            [
                ("tab, shift+tab", "Next / previous field"),
                ("enter", "Submit (in a text field)"),
                *describe_bindings(app, FormScreen.BINDINGS),
                *describe_bindings(app, ConfirmScreen.BINDINGS),
            ],
        )
    )
    sections.append(("Tables", [("arrows, pgup, pgdn", "Move the cursor")]))
    return sections


def render_sections(sections: list[Section]) -> Table:
    table = Table(box=None, show_header=False, padding=(0, 2, 0, 0), expand=False)
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("what")
    for index, (title, rows) in enumerate(sections):
        if index:
            table.add_row("", "")
        table.add_row(Text(title, style="bold underline"), "")
        for keys, description in rows:
            table.add_row(keys, description)
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close help")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box", classes="dialog"):
            yield Static("Keys  (Esc closes)", classes="dialog-title")
            yield Static(render_sections(key_sections(self.app)), id="help-keys")

    def action_close(self) -> None:
        self.dismiss(None)
