"""The right side of the Groups pane: one group's summary and storage use, then two tabs:
its members with their roles, and its files (:class:`AttachmentsBrowser`)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static, TabbedContent, TabPane

from mitosis_sdk.schemas import GroupInfo, Member
from mitosis_sdk.units import format_size
from mitosis_tui.widgets.attachments_browser import AttachmentsBrowser

BAR_WIDTH = 16
MEMBER_WIDTH = 24
MEMBERS_TAB = "members-tab"
FILES_TAB = "files-tab"


def storage_bar(used: int, quota: int, width: int = BAR_WIDTH) -> Text:
    """``███░░░ 12%  1.2 GB of 16.0 GB``: readable with or without colour."""
    share = used / quota if quota > 0 else 1.0
    filled = min(width, round(share * width))
    style = "red" if share >= 0.9 else "yellow" if share >= 0.75 else "green"
    bar = Text()
    bar.append("█" * filled, style=style)
    bar.append("░" * (width - filled), style="dim")
    bar.append(f" {share:>4.0%}  {format_size(used)} of {format_size(quota)}")
    return bar


class GroupDetails(Vertical):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.group: GroupInfo | None = None

    def compose(self) -> ComposeResult:
        yield Static("Select a group", id="group-summary")
        with TabbedContent(id="group-tabs", initial=MEMBERS_TAB):
            with TabPane("m Members", id=MEMBERS_TAB):
                members = DataTable(id="members", cursor_type="row", zebra_stripes=False)
                members.add_column("MEMBER", width=MEMBER_WIDTH)
                members.add_column("ROLE", width=5)
                yield members
                yield Static("", id="members-note", classes="note")
            with TabPane("f Files", id=FILES_TAB):
                yield AttachmentsBrowser(id="attachments")

    @property
    def tabs(self) -> TabbedContent:
        return self.query_one("#group-tabs", TabbedContent)

    @property
    def browser(self) -> AttachmentsBrowser:
        return self.query_one(AttachmentsBrowser)

    @property
    def files_active(self) -> bool:
        return self.tabs.active == FILES_TAB

    def show_tab(self, tab: str) -> None:
        """Show the members or the files, with the focus in that table."""
        self.tabs.active = tab
        if tab == FILES_TAB:
            self.browser.table.focus()
        else:
            self.members_table.focus()

    @property
    def members_table(self) -> DataTable:
        return self.query_one("#members", DataTable)

    def show(self, group: GroupInfo | None) -> None:
        previous = self.selected_member()
        self.group = group
        summary = self.query_one("#group-summary", Static)
        note = self.query_one("#members-note", Static)
        table = self.members_table
        self.browser.show_group(group, load=self.files_active)
        if group is None:
            summary.update("Select a group")
            table.clear()
            note.update("")
            return
        summary.update(self.describe(group))
        self.show_members(group.members, previous)
        if group.members is None:
            note.update("Only the group's admins see and manage its members.")
        else:
            note.update("")

    def describe(self, group: GroupInfo) -> Text:
        text = Text()
        text.append(group.name, style="bold")
        kind = "personal group" if group.personal else f"created by {group.creator}"
        text.append(f"  {kind}, {group.state}\n")
        text.append(f"your role: {group.my_role or '-'}   ")
        text.append(f"tasks: {group.task_count}   workers: {group.worker_count}\n")
        text.append("storage: ")
        text.append_text(storage_bar(group.storage_used, group.storage_quota))
        return text

    def show_members(self, members: list[Member] | None, selected: Member | None) -> None:
        table = self.members_table
        table.clear()
        for member in members or []:
            table.add_row(member.username, str(member.role), key=member.username)
        if selected is not None and members:
            names = [m.username for m in members]
            if selected.username in names:
                table.move_cursor(row=names.index(selected.username))

    def selected_member(self) -> Member | None:
        group = self.group
        table = self.members_table
        if group is None or not group.members or table.row_count == 0:
            return None
        row = table.cursor_row
        if 0 <= row < len(group.members):
            key = table.coordinate_to_cell_key((row, 0)).row_key.value
            return next((m for m in group.members if m.username == key), None)
        return None
