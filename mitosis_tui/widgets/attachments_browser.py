"""The Groups pane's Files tab: a group's attachments as folders and files (FEATURES F3).

Folders are key prefixes (``data/raw/``); the coordinator lists one folder at a time, a page
at a time, sub-folders first with the size and number of the files below them, so a group
with a million files browses like a small one. Enter opens a folder (or ``..``), Backspace
goes up, ``[`` and ``]`` turn pages. Uploads, downloads and deletes run in workers of their
own with progress in :class:`TransferList`, so the browser stays usable meanwhile and
several transfers can run at once; each can be cancelled (its button, or Esc for the newest),
which leaves nothing behind: no partial local file, no file on the coordinator.

Roles: every member lists and downloads; uploading and deleting need ``write``. The pane
greys those keys out for readers and the note under the table says why.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static
from textual.worker import get_current_worker

from mitosis_sdk.client.files import path_inside
from mitosis_sdk.errors import MitosisError
from mitosis_sdk.schemas import FolderEntry, FolderPage, GroupInfo, Role
from mitosis_sdk.schemas.files import AttachmentLink, AttachmentSelection
from mitosis_sdk.schemas.limits import MAX_PAGE
from mitosis_sdk.units import format_size
from mitosis_tui.screens.confirm import ConfirmScreen
from mitosis_tui.screens.file_forms import DownloadForm, DownloadTarget, UploadForm, UploadRequest
from mitosis_tui.widgets.transfer_list import Transfer, TransferList
from mitosis_tui.workers import Reported, api_work

if TYPE_CHECKING:
    from mitosis_tui.app import MitosisApp

PAGE_SIZE = 100
UP = ".."
NAME_WIDTHS = (20, 44)  # narrow terminals, and from WIDE columns of room on
WIDE = 100


def parent_of(prefix: str) -> str:
    """``data/raw/`` → ``data/``; the top stays the top."""
    return prefix.rstrip("/").rpartition("/")[0] + "/" if "/" in prefix.rstrip("/") else ""


class AttachmentsBrowser(Vertical):
    class Changed(Message):
        """Files were added or removed: the group's storage use changed."""

        def __init__(self, group: str) -> None:
            super().__init__()
            self.group = group

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.group: GroupInfo | None = None
        self.prefix = ""
        self.first = 0
        self.page: FolderPage | None = None

    @property
    def mitosis(self) -> MitosisApp:
        return cast("MitosisApp", self.app)

    def compose(self) -> ComposeResult:
        yield Static("", id="files-path")
        table = DataTable(id="files", cursor_type="row")
        self.add_columns(table, NAME_WIDTHS[0])
        yield table
        yield Static("", id="files-note", classes="note")
        yield TransferList(id="transfers")

    @staticmethod
    def add_columns(table: DataTable, name_width: int) -> None:
        table.add_column("NAME", width=name_width, key="name")
        table.add_column("SIZE", width=7, key="size")
        table.add_column("UPDATED", width=16, key="updated")
        table.add_column("BY", width=12, key="by")

    def on_resize(self) -> None:
        """Names get the room a wide terminal has (the columns are rebuilt, then the page)."""
        width = NAME_WIDTHS[self.size.width >= WIDE]
        table = self.table
        if next(iter(table.columns.values())).width != width:
            table.clear(columns=True)
            self.add_columns(table, width)
            self.show_page(self.page)

    @property
    def table(self) -> DataTable:
        return self.query_one("#files", DataTable)

    @property
    def transfers(self) -> TransferList:
        return self.query_one(TransferList)

    @property
    def can_write(self) -> bool:
        group = self.group
        return group is not None and group.my_role is not None and group.my_role.allows(Role.WRITE)

    # -- which folder ---------------------------------------------------------------------

    def show_group(self, group: GroupInfo | None, *, load: bool) -> None:
        """Follow the pane's selected group (the same group keeps its folder and page);
        ``load`` when the Files tab is showing (else :meth:`load` runs when it is shown)."""
        same = group is not None and self.group is not None and group.name == self.group.name
        self.group = group
        if not same:
            self.prefix, self.first = "", 0
            self.show_page(None)
        if load:
            self.load()

    def open(self, prefix: str, offset: int = 0) -> None:
        self.prefix, self.first = prefix, offset
        self.load()

    def up(self) -> None:
        if self.prefix:
            self.open(parent_of(self.prefix))

    def turn(self, pages: int) -> None:
        page = self.page
        if page is None:
            return
        offset = self.first + pages * PAGE_SIZE
        if 0 <= offset < page.total:
            self.open(self.prefix, offset)
        else:
            self.notify("No more pages that way.", severity="information", timeout=2)

    # -- loading --------------------------------------------------------------------------

    def load(self) -> None:
        if self.group is None:
            self.show_page(None)
        else:
            self.load_folder(self.group.name, self.prefix, self.first)

    @api_work(group="files-list")
    async def load_folder(self, group: str, prefix: str, offset: int) -> None:
        page = await self.mitosis.call(
            lambda c: c.list_attachment_folder(group, prefix, limit=PAGE_SIZE, offset=offset)
        )
        if self.group is None or (group, prefix) != (self.group.name, self.prefix):
            return
        if not page.entries and offset > 0:  # the last page emptied (by a delete): go back
            self.open(prefix, max(0, offset - PAGE_SIZE))
            return
        self.show_page(page)

    def show_page(self, page: FolderPage | None) -> None:
        self.page = page
        table = self.table
        keep = self.selected_key
        table.clear()
        path = self.query_one("#files-path", Static)
        if page is None or self.group is None:
            path.update("")
            self.query_one("#files-note", Static).update("")
            return
        path.update(Text(f"{self.group.name}:/{page.prefix}", style="bold"))
        if page.prefix:
            table.add_row(Text(UP, style="bold"), "", "", Text("up a folder", style="dim"), key=UP)
        for entry in page.entries:
            table.add_row(*self.cells(entry), key=entry.key)
        keys = [row.key.value for row in table.ordered_rows]
        if keep in keys:
            table.move_cursor(row=keys.index(keep))
        self.describe()

    def cells(self, entry: FolderEntry) -> list[object]:
        when = f"{entry.updated_at.astimezone():%Y-%m-%d %H:%M}"
        if entry.folder:
            return [
                Text(entry.name, style="bold"),
                format_size(entry.size),
                when,
                f"{entry.files} file(s)",
            ]
        creator = entry.attachment.creator if entry.attachment else ""
        return [entry.name, format_size(entry.size), when, creator]

    def describe(self) -> None:
        page = self.page
        if page is None:
            return
        if page.total == 0:
            parts = ["This folder is empty." if page.prefix else "No files yet."]
        else:
            last = min(self.first + len(page.entries), page.total)
            parts = [f"{self.first + 1}–{last} of {page.total}"]
            if page.total > PAGE_SIZE:
                parts.append("[ ] pages")
        if not self.can_write:
            parts.append(
                f"you have {self.group.my_role or 'no'} access: upload and delete need write"
            )
        self.query_one("#files-note", Static).update(" · ".join(parts))

    @property
    def selected_key(self) -> str | None:
        table = self.table
        if table.row_count == 0:
            return None
        return table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value

    @property
    def selected_entry(self) -> FolderEntry | None:
        key, page = self.selected_key, self.page
        if page is None or key is None:
            return None
        return next((entry for entry in page.entries if entry.key == key), None)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        key = event.row_key.value
        if key == UP:
            self.up()
            return
        entry = self.selected_entry
        if entry is not None and entry.folder:
            self.open(entry.key)
        elif entry is not None and entry.attachment is not None:
            info = entry.attachment
            self.notify(
                f"{info.key}: {info.size} bytes, {info.content_type or 'no type'}, "
                f"uploaded by {info.creator}, updated {info.updated_at.astimezone():%Y-%m-%d %H:%M}"
                " (s saves it)",
                markup=False,
            )

    # -- upload ---------------------------------------------------------------------------

    def ask_upload(self) -> None:
        group = self.group
        if group is None:
            return

        def submitted(request: UploadRequest | None) -> None:
            if request is not None:
                self.upload(group.name, request)

        self.app.push_screen(UploadForm(group.name, self.prefix), submitted)

    @api_work(group="transfer", exclusive=False)
    async def upload(self, group: str, request: UploadRequest) -> None:
        size = request.path.stat().st_size
        transfer = self.transfers.start("↑", request.key, size, get_current_worker())
        try:
            info = await self.mitosis.call(
                lambda c: c.upload_attachment(
                    group, request.path, request.key, progress=transfer.advance
                )
            )
        except OSError as exc:
            self.mitosis.report_error(f"cannot read {request.path}: {exc.strerror or exc}")
            return
        except asyncio.CancelledError:  # the SDK aborted the upload: the quota is given back
            self.notify(
                f"Upload of {request.path.name} cancelled: nothing was stored in {group}.",
                markup=False,
            )
            self.post_message(self.Changed(group))
            raise
        finally:
            self.transfers.finish(transfer)
        self.notify(f"Uploaded {request.path.name} to {group} as {info.key}.", markup=False)
        self.post_message(self.Changed(group))

    # -- download -------------------------------------------------------------------------

    def ask_download(self) -> None:
        entry, group = self.selected_entry, self.group
        if entry is None or group is None:
            self.notify("Select a file or folder first.", severity="warning")
            return
        name = entry.name.rstrip("/")
        form = DownloadForm(entry.key, Path.cwd() / name, folder=entry.folder)

        def submitted(target: DownloadTarget | None) -> None:
            if target is None:
                return
            if entry.folder:
                self.download_folder(group.name, entry.key, target)
            else:
                self.download(group.name, entry.key, target.path)

        self.app.push_screen(form, submitted)

    @api_work(group="transfer", exclusive=False)
    async def download(self, group: str, key: str, dest: Path) -> None:
        link = await self.mitosis.call(lambda c: c.attachment_link(group, key))
        try:
            saved = await self._save(link, dest)
        except asyncio.CancelledError:  # the SDK removed the partial file
            self.notify(f"Saving {key} cancelled: {dest} was left as it was.", markup=False)
            raise
        if saved:
            self.notify(f"Saved {key} ({format_size(link.size)}) as {dest}.", markup=False)

    async def _save(self, link: AttachmentLink, dest: Path) -> bool:
        transfer = self.transfers.start(
            "↓", f"{link.key} → {dest}", link.size, get_current_worker()
        )
        try:
            await self.mitosis.call(
                lambda c: c.download_url(link.url, dest, size=link.size, progress=transfer.advance)
            )
        except OSError as exc:
            self.mitosis.report_error(f"cannot write {dest}: {exc.strerror or exc}")
            return False
        except Reported:
            return False
        finally:
            self.transfers.finish(transfer)
        return True

    @api_work(group="transfer", exclusive=False)
    async def download_folder(self, group: str, prefix: str, target: DownloadTarget) -> None:
        """Every file below ``prefix``, into ``target.path`` by its key under the folder."""
        links: list[AttachmentLink] = []
        while True:
            selection = AttachmentSelection(prefix=prefix, limit=MAX_PAGE, offset=len(links))
            page = await self.mitosis.call(lambda c, s=selection: c.attachment_links(group, s))
            links += page.links
            if not page.links or len(links) >= page.total:
                break
        saved = kept = failed = 0
        for link in links:
            try:
                dest = path_inside(target.path, link.key.removeprefix(prefix))
            except MitosisError as exc:
                self.mitosis.report_error(exc.message)
                failed += 1
                continue
            if dest.exists() and not target.replace:
                kept += 1
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                ok = await self._save(link, dest)
            except asyncio.CancelledError:
                self.notify(
                    f"Saving {prefix} cancelled after {saved} of {len(links)} file(s); the one"
                    f" in progress, {dest}, was left as it was.",
                    markup=False,
                )
                raise
            saved, failed = saved + ok, failed + (not ok)
        message = f"Saved {saved} file(s) from {prefix} into {target.path}"
        extra = [f"{kept} already there (kept)"] * bool(kept) + [f"{failed} failed"] * bool(failed)
        self.notify(message + (f"; {', '.join(extra)}" if extra else "") + ".", markup=False)

    def cancel_transfer(self, transfer: Transfer | None = None) -> None:
        """Cancel ``transfer`` (None: the newest one that can still be cancelled)."""
        cancelled = self.transfers.cancel_newest() if transfer is None else transfer.cancel()
        if not cancelled:
            self.notify("Too late to cancel: the last bytes are through.", timeout=3)

    def on_transfer_list_cancel_pressed(self, message: TransferList.CancelPressed) -> None:
        message.stop()
        self.cancel_transfer(message.transfer)

    # -- delete ---------------------------------------------------------------------------

    def ask_delete(self) -> None:
        entry, group = self.selected_entry, self.group
        if entry is None or group is None:
            self.notify("Select a file or folder first.", severity="warning")
            return
        if entry.folder:
            question = (
                f"Delete the folder {entry.key} of {group.name}: {entry.files} file(s),"
                f" {format_size(entry.size)}? This cannot be undone."
            )
        else:
            question = f"Delete {entry.key} ({format_size(entry.size)}) from {group.name}?"

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.delete(group.name, entry)

        self.app.push_screen(ConfirmScreen(question, "Delete"), confirmed)

    @api_work(group="files-change", exclusive=False)
    async def delete(self, group: str, entry: FolderEntry) -> None:
        if entry.folder:
            selection = AttachmentSelection(prefix=entry.key)
            reply = await self.mitosis.call(lambda c: c.delete_attachments(group, selection))
            self.notify(
                f"Deleted {reply.deleted} file(s) in {entry.key}, freed "
                f"{format_size(reply.freed)}.",
                markup=False,
            )
        else:
            await self.mitosis.call(lambda c: c.delete_attachment(group, entry.key))
            self.notify(f"Deleted {entry.key}.", markup=False)
        self.post_message(self.Changed(group))
