"""MitosisApp: the full-screen client. It owns the connection and the session's life.

Screens and panes never touch the SDK client directly: they call :meth:`MitosisApp.call`
inside workers, which keeps the status bar's connection state and last-update time, shows
errors as notifications (and in the output panel), returns to the login screen on a 401 and
probes an unreachable coordinator with backoff until it answers again.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import ClassVar, TypeVar

import httpx
from textual import work
from textual.app import App
from textual.binding import Binding
from textual.reactive import reactive
from textual.timer import Timer

from mitosis_sdk import errors
from mitosis_sdk.auth import CredentialCache
from mitosis_sdk.client import AsyncClient
from mitosis_sdk.schemas import WhoAmI
from mitosis_tui.command_bridge import QUIT_WORDS, run_line, split_line
from mitosis_tui.commands import exitcodes
from mitosis_tui.commands.session import UsageError
from mitosis_tui.connection import Connection
from mitosis_tui.live import LiveStream
from mitosis_tui.palette import MitosisCommands
from mitosis_tui.screens.help import HelpScreen
from mitosis_tui.screens.login import LoginScreen, login_failure
from mitosis_tui.screens.main import MainScreen
from mitosis_tui.widgets.pane import Pane
from mitosis_tui.workers import Reported, api_work

T = TypeVar("T")

RECONNECT_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
TERMINAL_CHECK_EVERY = 1.0  # seconds


def _terminal_attached() -> bool:
    """Is stdin still a terminal? (A hung-up one no longer is.)"""
    stdin = sys.__stdin__
    return stdin is not None and not stdin.closed and os.isatty(stdin.fileno())


class MitosisApp(App[None]):
    TITLE = "Mitosis"
    CSS_PATH = Path(__file__).with_name("mitosis.tcss")
    COMMANDS: ClassVar = {MitosisCommands, *App.COMMANDS}
    BINDINGS = [
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("f1", "help", "Help", show=False),
    ]

    identity: reactive[WhoAmI | None] = reactive(None, init=False, always_update=True)
    connection_state: reactive[str] = reactive("connecting", init=False)
    last_update: reactive[datetime | None] = reactive(None, init=False)
    group_context: reactive[str] = reactive("", init=False)
    stream_state: reactive[str] = reactive("", init=False)

    def __init__(
        self,
        url: str | None = None,
        username: str | None = None,
        password: str | None = None,
        *,
        cache: CredentialCache | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        transfer_transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        clock: Callable[[], datetime] | None = None,
        refresh_interval: float = 30.0,
    ) -> None:
        super().__init__()
        self.connection = Connection(
            url,
            username,
            cache=cache,
            transport=transport,
            transfer_transport=transfer_transport,
            timeout=timeout,
        )
        self._password = password
        self.clock = clock or (lambda: datetime.now().astimezone())
        self.refresh_interval = refresh_interval
        self._reconnect_attempt = 0
        self._probe_timer: Timer | None = None
        self.live = LiveStream(self)

    def get_default_screen(self) -> MainScreen:
        return MainScreen()

    def on_mount(self) -> None:
        self.set_interval(self.refresh_interval, self._backstop_refresh)
        if not self.is_headless and _terminal_attached():
            self.set_interval(TERMINAL_CHECK_EVERY, self._check_terminal)
        if self._password and self.connection.username:
            self.login_with_password(self.connection.username, self._password)
        elif self.connection.use_cached_token():
            self.verify_session()
        else:
            self.show_login()

    async def on_unmount(self) -> None:
        await self.connection.close()

    def _check_terminal(self) -> None:
        # A terminal that went away (an SSH link dropped under `just up`, whose `just` keeps
        # the hang-up signal to itself) leaves stdin at end of file and Textual's reader
        # spinning: nothing can be typed or shown any more, so the client ends, and `just
        # up` then stops the coordinator and the worker.
        if not _terminal_attached():
            self.exit(return_code=1)

    @property
    def main_screen(self) -> MainScreen:
        return next(s for s in self.screen_stack if isinstance(s, MainScreen))

    # -- calls to the coordinator ----------------------------------------------------------

    async def call(self, operation: Callable[[AsyncClient], Awaitable[T]]) -> T:
        """Run one authenticated call; on failure tell the user and raise :class:`Reported`."""
        try:
            result = await operation(self.connection.client)
        except errors.Unauthorized as exc:
            self.session_ended(f"Your session has ended ({exc.message}). Log in again.")
            raise Reported from exc
        except errors.ConnectionFailed as exc:
            self.went_offline(exc.message)
            raise Reported from exc
        except errors.Forbidden as exc:
            if exc.code in (errors.ErrorCode.ACCOUNT_LOCKED, errors.ErrorCode.ACCOUNT_DELETED):
                self.session_ended(f"{exc.message[:1].upper()}{exc.message[1:]}.")
            else:
                self.report_error(exc.message)
            raise Reported from exc
        except errors.MitosisError as exc:
            self.report_error(exc.message)
            raise Reported from exc
        self.connected()
        return result

    def connected(self) -> None:
        self.connection_state = "connected"
        self.last_update = self.clock()
        self._reconnect_attempt = 0

    def report_error(self, message: str) -> None:
        self.notify(message, title="Error", severity="error", markup=False)
        self.main_screen.output.error(message)

    def went_offline(self, message: str) -> None:
        """Say so once, then probe with growing delays until the coordinator answers."""
        if self._probe_timer is not None:
            return  # a probe is already on its way
        delay = RECONNECT_DELAYS[min(self._reconnect_attempt, len(RECONNECT_DELAYS) - 1)]
        if self._reconnect_attempt == 0:
            self.report_error(message)
        self._reconnect_attempt += 1
        self.connection_state = f"offline, retrying in {delay:.0f}s"
        self._probe_timer = self.set_timer(delay, self._probe_now)

    def _probe_now(self) -> None:
        self._probe_timer = None
        self.probe()

    @api_work(group="probe")
    async def probe(self) -> None:
        """Is the coordinator back? Then reload what is visible."""
        await self.call(lambda c: c.health())
        if self.identity is None:
            self.verify_session()
        else:
            self.main_screen.active_pane.reload()

    def _backstop_refresh(self) -> None:
        # Events will push changes; until then (and as a backstop) poll the visible pane.
        idle = self.screen is self.main_screen and self.connection_state == "connected"
        if idle and self.identity is not None:
            self.main_screen.active_pane.reload()

    # -- session ---------------------------------------------------------------------------

    @api_work(group="session")
    async def verify_session(self) -> None:
        self.connection_state = "connecting"
        self.identity = await self.call(lambda c: c.whoami())

    @work(exclusive=True, group="session")
    async def login_with_password(self, username: str, password: str) -> None:
        try:
            me = await self.connection.login(self.connection.url, username, password)
        except errors.MitosisError as exc:
            self.show_login(login_failure(exc, self.connection.url))
            return
        self._logged_in(me)

    def show_login(self, message: str = "") -> None:
        """Show the login screen (once), above the main screen and nothing else."""
        if isinstance(self.screen, LoginScreen):
            self.screen.show_error(message)
            return
        while len(self.screen_stack) > 1 and not isinstance(self.screen, MainScreen):
            self.pop_screen()
        login = LoginScreen(self.connection.url, self.connection.username, message)
        self.push_screen(login, self._logged_in)

    def watch_identity(self, me: WhoAmI | None) -> None:
        if me is None:
            self.live.stop()
        else:
            self.live.start(me.username)

    def _logged_in(self, me: WhoAmI | None) -> None:
        if me is None:
            return
        self.connected()
        self.identity = me

    def session_ended(self, message: str) -> None:
        self.connection.forget()
        self.identity = None
        self.connection_state = "logged out"
        self.show_login(message)

    @work(exclusive=True, group="session")
    async def action_logout(self) -> None:
        try:
            await self.connection.logout()
        except errors.MitosisError as exc:
            self.notify(f"Logged out here; the coordinator said: {exc.message}", markup=False)
        self.session_ended("You have logged out.")

    # -- keys ------------------------------------------------------------------------------

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    # -- the : command line ----------------------------------------------------------------

    def run_command_line(self, text: str) -> None:
        try:
            argv = split_line(text)
        except UsageError as exc:
            self.report_error(str(exc))
            return
        if not argv:
            return
        if argv[0].lstrip(":") in QUIT_WORDS and len(argv) == 1:
            self.exit()
            return
        self.main_screen.action_show_pane("output")
        self.run_command(text, argv)

    @work(exclusive=True, group="command-line")
    async def run_command(self, text: str, argv: list[str]) -> None:
        panel = self.main_screen.output
        panel.begin(text)
        result = await run_line(self.connection, argv, panel.stdout, panel.stderr)
        panel.end(result.code)
        if result.logged_out:
            self.session_ended("You have logged out.")
        elif result.identity_changed or result.code == exitcodes.AUTH:
            self.verify_session()
        elif result.code == exitcodes.UNREACHABLE:
            self.went_offline(f"cannot reach the coordinator at {self.connection.url}")
        else:
            if result.code == exitcodes.OK:
                self.connected()
            for pane in self.main_screen.query(Pane):
                pane.loaded_at = None  # the command may have changed what panes show
