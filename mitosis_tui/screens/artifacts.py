"""A task's artifacts (``a``): type, size, when and by whom; Enter downloads one, with a
progress bar, into the folder typed above the list.

The bytes come straight from the presigned URL into ``<folder>/<uuid>-<type>.tar.gz`` (the
name ``tasks artifacts download`` gives), through the SDK's streamed, retried download: a
failed download never leaves a truncated file under that name. One download runs at a time;
while it does, Esc (or the Cancel button beside the bar) cancels it instead of closing, and
the partial file is gone with it (see :class:`~mitosis_tui.widgets.transfer_list.Transfer`
for why the last moment cannot be cancelled).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, cast

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Footer, Input, Label, ProgressBar, Static
from textual.worker import get_current_worker

from mitosis_sdk.schemas import ArtifactInfo
from mitosis_sdk.units import format_size
from mitosis_tui.widgets.task_columns import short_id
from mitosis_tui.widgets.transfer_list import Transfer
from mitosis_tui.workers import Reported, api_work

if TYPE_CHECKING:
    from mitosis_tui.app import MitosisApp

# Fixed widths: Textual sizes automatic columns only when idle (see the Admin pane).
COLUMNS = (("TYPE", 8), ("SIZE", 8), ("CREATED", 16), ("BY", 16), ("ATTEMPT", 7))


class ArtifactsScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "cancel_download", "Cancel download"),
        Binding("escape", "close", "Close"),
        Binding("d", "download", "Download", tooltip="Download the selected artifact"),
    ]

    def __init__(self, task: uuid.UUID, folder: Path | None = None) -> None:
        super().__init__(classes="modal")
        self.task_id = task
        self.folder = folder or Path.cwd()
        self.artifacts: list[ArtifactInfo] = []
        self.transfer: Transfer | None = None  # the download in flight

    @property
    def mitosis(self) -> MitosisApp:
        return cast("MitosisApp", self.app)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="artifacts-box"):
            yield Static(f"Artifacts of task {short_id(self.task_id)}", classes="dialog-title")
            with Horizontal(classes="field"):
                yield Label("Into folder", classes="field-label")
                yield Input(str(self.folder), id="artifact-folder")
            table = DataTable(id="artifact-list", cursor_type="row")
            for title, width in COLUMNS:
                table.add_column(title, width=width)
            yield table
            yield Static("Loading…", id="artifact-status", classes="note")
            with Horizontal(id="artifact-transfer"):
                yield ProgressBar(id="artifact-progress", show_eta=False)
                yield Button("Cancel", id="artifact-cancel", compact=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#artifact-list", DataTable).focus()
        self.load()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_download":
            return self.transfer is not None
        if action == "close":
            return self.transfer is None
        return True

    @api_work(group="artifacts-list")
    async def load(self) -> None:
        self.artifacts = await self.mitosis.call(lambda c: c.list_artifacts(self.task_id))
        table = self.query_one("#artifact-list", DataTable)
        table.clear()
        for artifact in self.artifacts:
            table.add_row(
                str(artifact.type),
                format_size(artifact.size),
                f"{artifact.created_at.astimezone():%Y-%m-%d %H:%M}",
                artifact.uploaded_by,
                str(artifact.attempt or "-"),
                key=str(artifact.type),
            )
        status = "Enter or d downloads the selected one." if self.artifacts else "No artifacts."
        self.query_one("#artifact-status", Static).update(status)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_download()

    def action_download(self) -> None:
        table = self.query_one("#artifact-list", DataTable)
        if not self.artifacts:
            return
        if self.transfer is not None:
            self.notify("A download is running: Esc cancels it.", severity="warning")
            return
        artifact = self.artifacts[table.cursor_row]
        folder = Path(self.query_one("#artifact-folder", Input).value.strip() or ".").expanduser()
        if not folder.is_dir():
            self.query_one("#artifact-status", Static).update(f"✗ {folder} is not a folder")
            return
        self.download(artifact, folder / f"{self.task_id}-{artifact.type}.tar.gz")

    @api_work(group="artifact-download", exclusive=False)
    async def download(self, artifact: ArtifactInfo, dest: Path) -> None:
        bar = self.query_one("#artifact-progress", ProgressBar)
        status = self.query_one("#artifact-status", Static)
        transfer = Transfer(0, "↓", dest.name, artifact.size, get_current_worker())
        self._moving(transfer)
        bar.update(total=max(artifact.size, 1), progress=0)
        status.update(f"Downloading the {artifact.type} ({format_size(artifact.size)})…")

        def advance(count: int) -> None:
            transfer.advance(count)
            bar.update(progress=transfer.done)

        try:
            await self.mitosis.call(
                lambda c: c.download_artifact(self.task_id, artifact.type, dest, progress=advance)
            )
        except Reported:
            status.update(f"✗ the {artifact.type} was not downloaded")
            raise
        except asyncio.CancelledError:  # the SDK removed the partial file
            status.update(f"✗ Download cancelled: {dest} was left as it was.")
            raise
        finally:
            self._moving(None)
        bar.update(progress=max(artifact.size, 1))
        status.update(f"Saved {dest}")
        what = f"the {artifact.type} of {short_id(self.task_id)}"
        self.notify(f"Saved {what} as {dest}", markup=False)

    def _moving(self, transfer: Transfer | None) -> None:
        self.transfer = transfer
        self.query_one("#artifact-transfer").set_class(transfer is not None, "-moving")
        self.refresh_bindings()

    def action_cancel_download(self) -> None:
        if self.transfer is not None and not self.transfer.cancel():
            self.notify("Too late to cancel: the last bytes are through.", timeout=3)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "artifact-cancel":
            event.stop()
            self.action_cancel_download()

    def action_close(self) -> None:
        self.dismiss(None)
