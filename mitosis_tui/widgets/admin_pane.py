"""Pane 4 (Mitosis admins only): users, their state and quotas; group storage quotas.

Create (optionally as an admin), lock and unlock, reset a password, delete (soft: the name
stays reserved), change how many groups a user may create and a group's storage quota. Quota
changes are checked with the SDK's parsers in the form, so a typo is explained before
anything is sent; lock and delete ask first, since they end the user's sessions at once.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import DataTable, Label

from mitosis_sdk.schemas import UserCreate, UserInfo, UserState
from mitosis_sdk.units import format_size, parse_count_change, parse_size_change
from mitosis_tui.screens.confirm import ConfirmScreen
from mitosis_tui.screens.forms import PasswordForm, QuotaForm, UserForm
from mitosis_tui.widgets.pane import Pane
from mitosis_tui.workers import api_work

# Fixed widths: Textual sizes automatic columns only when idle, and rows drawn before that
# keep their clipped cells; the table also never jumps as users load. Names past 20 cells
# are clipped (the forms take them whole).
COLUMNS = (("USER", 20), ("ADMIN", 5), ("STATE", 9), ("GROUPS", 7), ("CREATED", 10))
STATE_LABELS = {
    UserState.ACTIVE: "● active",
    UserState.LOCKED: "⊘ locked",
    UserState.DELETED: "✗ deleted",
}


class AdminPane(Pane):
    TITLE = "Admin"

    BINDINGS = [
        Binding("n", "new_user", "New user", tooltip="Create a user and their personal group"),
        Binding("l", "toggle_lock", "Lock", tooltip="Lock or unlock the selected user"),
        Binding("p", "reset_password", "Password", tooltip="Reset the selected user's password"),
        Binding("g", "group_quota", "Quota", tooltip="Change how many groups a user may create"),
        Binding("s", "storage_quota", "Storage", tooltip="Change a group's storage quota"),
        # Rare enough to leave the footer to the others (? and Ctrl+P list it).
        Binding(
            "d,delete", "delete_user", "Delete", show=False, tooltip="Delete the selected user"
        ),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.users: list[UserInfo] = []

    def compose(self) -> ComposeResult:
        yield Label("Users", classes="section-title")
        table = DataTable(id="users", cursor_type="row")
        for title, width in COLUMNS:
            table.add_column(title, width=width)
        yield table

    @property
    def table(self) -> DataTable:
        return self.query_one("#users", DataTable)

    def load(self) -> None:
        self.load_users()

    @api_work(group="users-list")
    async def load_users(self) -> None:
        self.show_users(await self.mitosis.call(lambda c: c.list_users()))

    def show_users(self, users: list[UserInfo]) -> None:
        table = self.table
        keep = self.selected_user()
        self.users = sorted(users, key=lambda u: u.username)
        table.clear()
        for user in self.users:
            table.add_row(
                user.username,
                "yes" if user.is_admin else "",
                STATE_LABELS.get(user.state, str(user.state)),
                f"{user.groups_created}/{user.group_quota}",
                f"{user.created_at.astimezone():%Y-%m-%d}",
                key=user.username,
            )
        names = [u.username for u in self.users]
        if keep is not None and keep.username in names:
            table.move_cursor(row=names.index(keep.username))

    def selected_user(self) -> UserInfo | None:
        table = self.table
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        return next((u for u in self.users if u.username == key), None)

    def clear(self) -> None:
        super().clear()
        self.users = []
        self.table.clear()

    def _selected_or_warn(self) -> UserInfo | None:
        user = self.selected_user()
        if user is None:
            self.notify("Select a user first.", severity="warning")
        return user

    # -- actions -------------------------------------------------------------------------

    def action_new_user(self) -> None:
        def submitted(user: UserCreate | None) -> None:
            if user is not None:
                self.create_user(user)

        self.app.push_screen(UserForm(), submitted)

    @api_work(group="user-change")
    async def create_user(self, user: UserCreate) -> None:
        made = await self.mitosis.call(
            lambda c: c.create_user(user.username, user.password, user.admin)
        )
        self.notify(f"Created user {made.username} with a personal group.")
        self.load_users()

    def action_toggle_lock(self) -> None:
        user = self._selected_or_warn()
        if user is None:
            return
        if user.state == UserState.LOCKED:
            self.set_state(user.username, UserState.ACTIVE)
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.set_state(user.username, UserState.LOCKED)

        question = f"Lock {user.username}? Their sessions end at once."
        self.app.push_screen(ConfirmScreen(question, "Lock"), confirmed)

    @api_work(group="user-change")
    async def set_state(self, username: str, state: UserState) -> None:
        user = await self.mitosis.call(lambda c: c.set_user_state(username, state))
        self.notify(f"{user.username} is now {user.state}.")
        self.load_users()

    def action_reset_password(self) -> None:
        user = self._selected_or_warn()
        if user is None:
            return

        def submitted(password: str | None) -> None:
            if password:
                self.reset_password(user.username, password)

        self.app.push_screen(PasswordForm(user.username), submitted)

    @api_work(group="user-change")
    async def reset_password(self, username: str, password: str) -> None:
        await self.mitosis.call(lambda c: c.reset_password(username, password))
        self.notify(f"Password of {username} changed; their sessions have ended.")

    def action_group_quota(self) -> None:
        user = self._selected_or_warn()
        if user is None:
            return
        form = QuotaForm(
            "Change how many groups a user may create",
            "User",
            user.username,
            "+1",
            parse_count_change,
        )
        self.app.push_screen(form, self._group_quota_submitted)

    def _group_quota_submitted(self, change: tuple[str, str] | None) -> None:
        if change is not None:
            self.change_group_quota(*change)

    @api_work(group="user-change")
    async def change_group_quota(self, username: str, change: str) -> None:
        user = await self.mitosis.call(lambda c: c.change_group_quota(username, change))
        self.notify(f"{user.username} may create {user.group_quota} groups.")
        self.load_users()

    def action_storage_quota(self) -> None:
        user = self.selected_user()
        form = QuotaForm(
            "Change a group's storage quota",
            "Group",
            user.username if user else "",
            "+2GB",
            parse_size_change,
        )
        self.app.push_screen(form, self._storage_quota_submitted)

    def _storage_quota_submitted(self, change: tuple[str, str] | None) -> None:
        if change is not None:
            self.change_storage_quota(*change)

    @api_work(group="user-change")
    async def change_storage_quota(self, group: str, change: str) -> None:
        info = await self.mitosis.call(lambda c: c.change_storage_quota(group, change))
        self.notify(f"Storage quota of {info.name} is now {format_size(info.storage_quota)}.")

    def action_delete_user(self) -> None:
        user = self._selected_or_warn()
        if user is None:
            return
        if user.state == UserState.DELETED:
            self.notify(f"{user.username} is already deleted.", severity="warning")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.delete_user(user.username)

        question = (
            f"Delete {user.username}? Their sessions end at once and they can no longer log"
            " in; the name stays reserved."
        )
        self.app.push_screen(ConfirmScreen(question, "Delete"), confirmed)

    @api_work(group="user-change")
    async def delete_user(self, username: str) -> None:
        await self.mitosis.call(lambda c: c.delete_user(username))
        self.notify(f"Deleted {username}.")
        self.load_users()

    def focus_target(self) -> Widget:
        return self.table
