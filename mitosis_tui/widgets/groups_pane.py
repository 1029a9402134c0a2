"""Pane 3: my groups and roles; the selected group's details; members and files.

Group admins (and Mitosis admins) add members, change roles and remove members through
modal forms; the footer greys those keys out for everyone else. The Files tab
(:class:`AttachmentsBrowser`) browses, uploads, saves and deletes the group's attachments.

Both tabs' keys are this pane's ``BINDINGS`` (so ``?`` and Ctrl+P list them); each tab's keys
show only while that tab does (``d`` removes a member there, deletes a file here), and an
action run by name from the palette switches to its tab first.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import DataTable, Label, TabbedContent

from mitosis_sdk.schemas import GroupInfo, GroupMembership, Member
from mitosis_tui.screens.confirm import ConfirmScreen
from mitosis_tui.screens.forms import GroupForm, MemberForm
from mitosis_tui.widgets.attachments_browser import AttachmentsBrowser
from mitosis_tui.widgets.group_details import FILES_TAB, MEMBERS_TAB, GroupDetails
from mitosis_tui.widgets.pane import Pane
from mitosis_tui.workers import api_work

MEMBER_ACTIONS = {"add_member", "change_role", "remove_member", "show_files"}
FILE_ACTIONS = {
    "cancel_transfer",
    "upload",
    "download",
    "delete_file",
    "folder_up",
    "next_page",
    "previous_page",
    "show_members",
}
WRITE_ACTIONS = {"upload", "delete_file"}
# Fixed column widths: the list never jumps as rows load (long names are clipped here and
# shown whole in the details).
GROUP_WIDTH = 16
ROLE_WIDTH = 5


class GroupsPane(Pane):
    TITLE = "Groups"

    BINDINGS = [
        # Only while a transfer runs (first, so the footer never cuts it off); else Esc goes
        # back to the previous pane as everywhere.
        Binding("escape", "cancel_transfer", "Cancel", tooltip="Cancel the newest transfer"),
        Binding("a", "add_member", "Add member", tooltip="Add a member to the selected group"),
        Binding("e", "change_role", "Role", tooltip="Change the selected member's role"),
        Binding("d,delete", "remove_member", "Remove", tooltip="Remove the selected member"),
        Binding("n", "new_group", "New group", tooltip="Create a group (you become its admin)"),
        Binding("f", "show_files", "Files", tooltip="Show the group's files"),
        Binding("u", "upload", "Upload", tooltip="Upload a local file into this folder"),
        Binding("s", "download", "Save", tooltip="Save the selected file or folder locally"),
        Binding("d,delete", "delete_file", "Delete", tooltip="Delete the selected file or folder"),
        Binding("backspace", "folder_up", "Up", tooltip="Go up a folder"),
        Binding(
            "right_square_bracket",
            "next_page",
            "Next page",
            show=False,
            key_display="]",
            tooltip="Next page of a big folder",
        ),
        Binding(
            "left_square_bracket",
            "previous_page",
            "Previous page",
            show=False,
            key_display="[",
            tooltip="Previous page of a big folder",
        ),
        Binding("m", "show_members", "Members", tooltip="Show the group's members"),
    ]

    class GroupSelected(Message):
        """The group in focus changed (``None``: no group); the status bar shows the role."""

        def __init__(self, group: GroupInfo | None) -> None:
            super().__init__()
            self.group = group

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.memberships: list[GroupMembership] = []

    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="group-list-box"):
                yield Label("My groups", classes="section-title")
                table = DataTable(id="group-list", cursor_type="row")
                table.add_column("GROUP", width=GROUP_WIDTH)
                table.add_column("ROLE", width=ROLE_WIDTH)
                yield table
            yield GroupDetails(id="group-details")

    @property
    def group_list(self) -> DataTable:
        return self.query_one("#group-list", DataTable)

    @property
    def details(self) -> GroupDetails:
        return self.query_one(GroupDetails)

    @property
    def selected_group(self) -> str | None:
        table = self.group_list
        if table.row_count == 0:
            return None
        return table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value

    @property
    def can_manage(self) -> bool:
        group = self.details.group
        return group is not None and group.members is not None

    @property
    def browser(self) -> AttachmentsBrowser:
        return self.details.browser

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        files = self.details.files_active
        if action in MEMBER_ACTIONS:
            if files:
                return False  # the Files tab's keys show instead
            if action != "show_files" and not self.can_manage:
                return None  # shown greyed out: only group admins manage members
        if action in FILE_ACTIONS:
            if not files:
                return False
            if action in WRITE_ACTIONS and not self.browser.can_write:
                return None  # greyed out; the note under the files says why
            if action == "cancel_transfer" and not self.browser.transfers.active:
                return False
        return True

    async def run_action(self, action: str, namespaces=None) -> bool:
        """Run an action by name (the palette does): first show the tab it belongs to."""
        if action in FILE_ACTIONS - {"show_members"} and not self.details.files_active:
            self.details.show_tab(FILES_TAB)
        elif action in MEMBER_ACTIONS - {"show_files"} and self.details.files_active:
            self.details.show_tab(MEMBERS_TAB)
        return await super().run_action(action, namespaces)

    # -- loading -------------------------------------------------------------------------

    def load(self) -> None:
        self.load_groups()

    @api_work(group="groups-list")
    async def load_groups(self, select: str | None = None) -> None:
        memberships = await self.mitosis.call(lambda c: c.my_groups())
        self.show_groups(sorted(memberships, key=lambda m: m.group), select)

    def show_groups(self, memberships: list[GroupMembership], select: str | None) -> None:
        table = self.group_list
        keep = select or self.selected_group
        unchanged = memberships == self.memberships and table.row_count == len(memberships)
        self.memberships = memberships
        if not unchanged:  # rebuild only what changed: no flicker, no stray highlight events
            table.clear()
            for membership in memberships:
                table.add_row(membership.group, str(membership.role), key=membership.group)
        names = [m.group for m in memberships]
        if keep in names:
            table.move_cursor(row=names.index(keep))
        if names:
            self.load_group(names[table.cursor_row])
        else:
            self.show_group(None)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "group-list" and event.row_key.value is not None:
            event.stop()
            if event.cursor_row != event.data_table.cursor_row:
                return  # stale: the list was rebuilt and the cursor moved on since
            current = self.details.group
            if current is None or current.name != event.row_key.value:
                self.load_group(event.row_key.value)

    @api_work(group="group-details")
    async def load_group(self, name: str) -> None:
        self.show_group(await self.mitosis.call(lambda c: c.get_group(name)))

    def show_group(self, group: GroupInfo | None) -> None:
        self.details.show(group)
        self.refresh_bindings()
        self.post_message(self.GroupSelected(group))

    def clear(self) -> None:
        super().clear()
        self.memberships = []
        self.group_list.clear()
        self.show_group(None)

    # -- actions -------------------------------------------------------------------------

    def _managed_group(self) -> GroupInfo | None:
        group = self.details.group
        if group is None:
            self.notify("Select a group first.", severity="warning")
            return None
        if group.members is None:
            self.notify(f"Only admins of {group.name} manage its members.", severity="warning")
            return None
        return group

    def action_add_member(self) -> None:
        group = self._managed_group()
        if group is not None:
            self.app.push_screen(MemberForm(group.name), self._update_member)

    def action_change_role(self) -> None:
        group = self._managed_group()
        if group is None:
            return
        member = self.details.selected_member()
        if member is None:
            self.notify("Select a member in the members table.", severity="warning")
            return
        form = MemberForm(group.name, member.username, member.role)
        self.app.push_screen(form, self._update_member)

    def _update_member(self, member: Member | None) -> None:
        if member is not None and self.details.group is not None:
            self.update_member(self.details.group.name, member)

    @api_work(group="group-change")
    async def update_member(self, group: str, member: Member) -> None:
        info = await self.mitosis.call(lambda c: c.update_members(group, [member]))
        self.notify(f"{member.username} is now {member.role} in {group}.")
        self.show_group(info)

    def action_remove_member(self) -> None:
        group = self._managed_group()
        if group is None:
            return
        member = self.details.selected_member()
        if member is None:
            self.notify("Select a member in the members table.", severity="warning")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.remove_member(group.name, member.username)

        question = f"Remove {member.username} from {group.name}?"
        self.app.push_screen(ConfirmScreen(question, "Remove"), confirmed)

    @api_work(group="group-change")
    async def remove_member(self, group: str, username: str) -> None:
        info = await self.mitosis.call(lambda c: c.remove_members(group, [username]))
        self.notify(f"Removed {username} from {group}.")
        if info is None:  # we removed our own access
            self.load_groups()
        else:
            self.show_group(info)

    def action_new_group(self) -> None:
        def created(name: str | None) -> None:
            if name:
                self.create_group(name)

        self.app.push_screen(GroupForm(), created)

    @api_work(group="group-change")
    async def create_group(self, name: str) -> None:
        await self.mitosis.call(lambda c: c.create_group(name))
        self.notify(f"Created group {name}; you are its admin.")
        self.load_groups(select=name)

    # -- files -------------------------------------------------------------------------

    def action_show_files(self) -> None:
        self.details.show_tab(FILES_TAB)

    def action_show_members(self) -> None:
        self.details.show_tab(MEMBERS_TAB)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.tabbed_content.id != "group-tabs":
            return
        event.stop()
        if event.pane.id == FILES_TAB:
            self.browser.load()
        self.refresh_bindings()

    def action_upload(self) -> None:
        self.browser.ask_upload()

    def action_download(self) -> None:
        self.browser.ask_download()

    def action_delete_file(self) -> None:
        self.browser.ask_delete()

    def action_cancel_transfer(self) -> None:
        self.browser.cancel_transfer()

    def action_folder_up(self) -> None:
        self.browser.up()

    def action_next_page(self) -> None:
        self.browser.turn(1)

    def action_previous_page(self) -> None:
        self.browser.turn(-1)

    def on_attachments_browser_changed(self, event: AttachmentsBrowser.Changed) -> None:
        event.stop()
        if self.details.group is not None and self.details.group.name == event.group:
            self.load_group(event.group)

    def focus_target(self) -> Widget:
        return self.group_list
