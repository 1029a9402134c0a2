"""Modal forms with typed results: each dismisses with its value, or ``None`` when cancelled.

:class:`FormScreen` draws the frame (title, fields, inline error, buttons), submits on Enter
and cancels on Esc; a form subclass lists its fields and turns them into its result,
raising :class:`Invalid` with a message the user sees under the fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Generic, TypeVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Footer, Input, Label, Select, Static

from mitosis_sdk.schemas import NAME_PATTERN, Member, Role, UserCreate
from mitosis_sdk.units import QuotaChange

T = TypeVar("T")

ROLE_OPTIONS = [(role.value, role) for role in Role]


class Invalid(ValueError):
    """A field's value is unusable; the message is shown in the form."""


def check_name(value: str, what: str) -> str:
    """A user or group name as the wire takes it, or Invalid saying the rule."""
    value = value.strip()
    if not re.fullmatch(NAME_PATTERN, value):
        raise Invalid(f"{what}: 1-64 letters, digits, '_' or '-'")
    return value


class FormScreen(ModalScreen[T | None], Generic[T]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "submit", "Submit"),
    ]
    TITLE_TEXT = ""

    def __init__(self) -> None:
        super().__init__(classes="modal")

    def fields(self) -> ComposeResult:
        raise NotImplementedError

    def result(self) -> T:
        raise NotImplementedError

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog form"):
            yield Static(self.TITLE_TEXT, classes="dialog-title")
            yield from self.fields()
            yield Static("", id="form-error", classes="form-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("OK", id="ok", variant="primary", compact=True)
                yield Button("Cancel", id="cancel", compact=True)
        yield Footer(compact=True)

    def field(self, label: str, widget: Widget) -> ComposeResult:
        with Horizontal(classes="field"):
            yield Label(label, classes="field-label")
            yield widget

    def value(self, selector: str) -> str:
        return self.query_one(selector, Input).value

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self.action_submit()
        else:
            self.action_cancel()

    def action_submit(self) -> None:
        try:
            value = self.result()
        except Invalid as exc:
            self.query_one("#form-error", Static).update(f"✗ {exc}")
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class MemberForm(FormScreen[Member]):
    """Add a member to a group, or (with ``username``) change a member's role."""

    def __init__(self, group: str, username: str | None = None, role: Role = Role.READ) -> None:
        super().__init__()
        self.group, self.username, self.role = group, username, role
        verb = f"Change the role of {username} in" if username else "Add a member to"
        self.TITLE_TEXT = f"{verb} {group}"

    def fields(self) -> ComposeResult:
        yield from self.field(
            "User",
            Input(self.username or "", id="member-user", disabled=bool(self.username)),
        )
        yield from self.field(
            "Role", Select(ROLE_OPTIONS, value=self.role, allow_blank=False, id="member-role")
        )

    def result(self) -> Member:
        role = self.query_one("#member-role", Select).value
        return Member(username=check_name(self.value("#member-user"), "user"), role=Role(role))


class GroupForm(FormScreen[str]):
    TITLE_TEXT = "Create a group (you become its admin)"

    def fields(self) -> ComposeResult:
        yield from self.field("Name", Input(id="group-name"))

    def result(self) -> str:
        return check_name(self.value("#group-name"), "group name")


class UserForm(FormScreen[UserCreate]):
    TITLE_TEXT = "Create a user (and their personal group)"

    def fields(self) -> ComposeResult:
        yield from self.field("User", Input(id="user-name"))
        yield from self.field("Password", Input(id="user-password", password=True))
        yield Checkbox("Mitosis admin", id="user-admin")

    def result(self) -> UserCreate:
        password = self.value("#user-password")
        if not password:
            raise Invalid("a password is needed")
        return UserCreate(
            username=check_name(self.value("#user-name"), "user name"),
            password=password,
            admin=self.query_one("#user-admin", Checkbox).value,
        )


class PasswordForm(FormScreen[str]):
    def __init__(self, username: str) -> None:
        super().__init__()
        self.TITLE_TEXT = f"New password for {username} (their sessions end)"

    def fields(self) -> ComposeResult:
        yield from self.field("Password", Input(id="new-password", password=True))
        yield from self.field("Again", Input(id="new-password-again", password=True))

    def result(self) -> str:
        password = self.value("#new-password")
        if not password:
            raise Invalid("a password is needed")
        if password != self.value("#new-password-again"):
            raise Invalid("the two passwords differ")
        return password


class QuotaForm(FormScreen[tuple[str, str]]):
    """A quota change (``+N``, ``-N``, ``=N`` or ``N``) for a named user or group, checked
    with the SDK's parser (``parse``: ``parse_count_change`` or ``parse_size_change``), so a
    typo is caught here with the same words the coordinator would use."""

    def __init__(
        self,
        title: str,
        subject_label: str,
        subject: str,
        hint: str,
        parse: Callable[[str], QuotaChange],
    ) -> None:
        super().__init__()
        self.TITLE_TEXT = title
        self.subject_label, self.subject, self.hint = subject_label, subject, hint
        self.parse = parse

    def fields(self) -> ComposeResult:
        yield from self.field(self.subject_label, Input(self.subject, id="quota-subject"))
        yield from self.field("Change", Input(id="quota-change", placeholder=self.hint))

    def result(self) -> tuple[str, str]:
        change = self.value("#quota-change").strip()
        if not change:
            raise Invalid(f"a change is needed, e.g. {self.hint}")
        try:
            self.parse(change)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
        return check_name(self.value("#quota-subject"), self.subject_label.lower()), change
