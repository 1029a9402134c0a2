"""The login screen: coordinator URL, user and password, with errors a person can act on.

It is shown at start when no cached token works and whenever the coordinator answers 401.
URL and user are pre-filled from the credential cache; on success the screen dismisses with
the caller's :class:`~mitosis_sdk.schemas.WhoAmI`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, Static

from mitosis_sdk import errors
from mitosis_sdk.errors import ErrorCode
from mitosis_sdk.schemas import WhoAmI

if TYPE_CHECKING:
    from mitosis_tui.app import MitosisApp


def login_failure(exc: errors.MitosisError, url: str) -> str:
    """What to tell the user when a login attempt fails."""
    if isinstance(exc, errors.Unauthorized):
        return "Wrong user name or password."
    if isinstance(exc, errors.Forbidden) and exc.code == ErrorCode.ACCOUNT_LOCKED:
        return "This account is locked. Ask a Mitosis admin to unlock it."
    if isinstance(exc, errors.Forbidden) and exc.code == ErrorCode.ACCOUNT_DELETED:
        return "This account has been deleted."
    if isinstance(exc, errors.RateLimited):
        return f"Too many failed logins: {exc.message}."
    if isinstance(exc, errors.ConnectionFailed):
        return f"Cannot reach the coordinator at {url}. Is mitosis-server running there?"
    return exc.message


class LoginScreen(Screen[WhoAmI]):
    AUTO_FOCUS = None
    # Every printable key goes to a text field here, so help is on F1 (Ctrl+C still quits).
    BINDINGS = [Binding("f1", "app.help", "Help")]

    def __init__(self, url: str, username: str | None, message: str = "") -> None:
        super().__init__()
        self.url = url
        self.username = username or ""
        self.message = message

    @property
    def mitosis(self) -> MitosisApp:
        return cast("MitosisApp", self.app)

    def compose(self) -> ComposeResult:
        with Vertical(id="login-box"):
            yield Static("Mitosis", id="login-title")
            yield Static("Log in to a coordinator  ·  Ctrl+C quits", id="login-subtitle")
            with Horizontal(classes="field"):
                yield Label("Coordinator", classes="field-label")
                yield Input(self.url, id="login-url", placeholder="http://host:5000")
            with Horizontal(classes="field"):
                yield Label("User", classes="field-label")
                yield Input(self.username, id="login-user")
            with Horizontal(classes="field"):
                yield Label("Password", classes="field-label")
                yield Input(id="login-password", password=True)
            yield Static(self._error_text(self.message), id="login-error")
            yield Button("Log in", id="login-button", variant="primary", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        self._focus_first_empty()

    def _inputs(self) -> list[Input]:
        return [self.query_one(f"#login-{name}", Input) for name in ("url", "user", "password")]

    def _focus_first_empty(self) -> None:
        inputs = self._inputs()
        next((i for i in inputs if not i.value.strip()), inputs[-1]).focus()

    @staticmethod
    def _error_text(message: str) -> str:
        return f"✗ {message}" if message else ""

    def show_error(self, message: str) -> None:
        self.message = message
        self.query_one("#login-error", Static).update(self._error_text(message))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.submit(explain=event.input.id == "login-password")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.submit(explain=True)

    def submit(self, explain: bool) -> None:
        """Log in when every field is filled; otherwise move to the first empty one."""
        url, user = (i.value.strip() for i in self._inputs()[:2])
        password = self._inputs()[2].value
        if not (url and user and password):
            if explain:
                missing = "coordinator URL" if not url else "user name" if not user else "password"
                self.show_error(f"Enter the {missing}.")
            self._focus_first_empty()
            return
        self.query_one("#login-error", Static).update("Logging in…")
        self.attempt(url, user, password)

    @work(exclusive=True, group="login")
    async def attempt(self, url: str, user: str, password: str) -> None:
        connection = self.mitosis.connection
        try:
            me = await connection.login(url, user, password)
        except errors.MitosisError as exc:
            self.show_error(login_failure(exc, url))
            password_input = self.query_one("#login-password", Input)
            password_input.value = ""
            password_input.focus()
            return
        self.dismiss(me)
