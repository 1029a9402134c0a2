"""Start-up and login: the login screen, its error messages, cached tokens, the 401 path."""

from __future__ import annotations

import httpx
import pytest
from textual.widgets import Input

from mitosis_sdk.auth import CredentialCache
from mitosis_sdk.schemas import UserState
from mitosis_tui.app import MitosisApp
from mitosis_tui.screens.login import LoginScreen
from mitosis_tui.screens.main import MainScreen
from tests.conftest import free_port
from tests.tui.conftest import SIZE, URL, screen_text, settle, until


async def log_in(pilot, user: str, password: str, *, type_keys: bool = False) -> None:
    """Fill in the login screen (key by key, as a person would, with ``type_keys``), Enter."""
    await until(pilot, lambda: isinstance(pilot.app.screen, LoginScreen), what="login screen")
    screen = pilot.app.screen
    screen.query_one("#login-user", Input).value = ""
    if type_keys:
        await pilot.click("#login-user")
        await pilot.press(*user, "tab", *password)
    else:
        screen.query_one("#login-user", Input).value = user
        screen.query_one("#login-password", Input).value = password
        screen.query_one("#login-password", Input).focus()
    await pilot.press("enter")
    await settle(pilot)


def login_error(app: MitosisApp) -> str:
    return str(app.screen.query_one("#login-error").render())


async def test_logging_in_through_the_login_screen_shows_the_tasks_pane(make_tui, cache):
    """No cached token: the login screen appears; after logging in, the tasks pane loads."""
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        await log_in(pilot, "mitosis_admin", "mitosis_admin", type_keys=True)
        assert isinstance(app.screen, MainScreen)
        assert app.identity is not None
        assert app.identity.username == "mitosis_admin"
        assert app.main_screen.tabs.active == "tasks"
        await until(pilot, lambda: "No tasks yet" in screen_text(app), what="the tasks pane")
    assert cache.last() == (URL, "mitosis_admin")
    assert cache.get(URL, "mitosis_admin") is not None


async def test_wrong_password_is_reported_on_the_login_screen(make_tui):
    """A wrong password keeps the login screen up with a clear message."""
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        await log_in(pilot, "mitosis_admin", "nope")
        assert isinstance(app.screen, LoginScreen)
        assert "Wrong user name or password" in login_error(app)
        assert app.screen.query_one("#login-password").value == ""


async def test_locked_account_is_reported_on_the_login_screen(make_tui, make_user, admin):
    """A locked account says it is locked and who can help."""
    await make_user("alice")
    await admin.set_user_state("alice", UserState.LOCKED)
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        await log_in(pilot, "alice", "pw")
        assert "locked" in login_error(app)
        assert "admin" in login_error(app)


async def test_unreachable_coordinator_is_reported_on_the_login_screen(cache):
    """A coordinator that does not answer is named in the message."""
    url = f"http://127.0.0.1:{free_port()}"
    app = MitosisApp(url, cache=cache, timeout=2)
    async with app.run_test(size=SIZE) as pilot:
        await log_in(pilot, "mitosis_admin", "mitosis_admin")
        assert f"Cannot reach the coordinator at {url}" in login_error(app)


async def test_the_login_screen_remembers_the_last_coordinator_and_user(make_tui, cache):
    """After a log-out, a client started with neither -c nor -u shows the login screen with
    the last coordinator and user filled in, and waits for the password."""
    first = make_tui()
    async with first.run_test(size=SIZE) as pilot:
        await log_in(pilot, "mitosis_admin", "mitosis_admin")
        assert isinstance(first.screen, MainScreen)
        first.action_logout()
        await until(pilot, lambda: isinstance(first.screen, LoginScreen), what="logged out")
    assert cache.get(URL, "mitosis_admin") is None  # no token left to start with

    second = make_tui(url=None)
    async with second.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(second.screen, LoginScreen), what="login screen")
        screen = second.screen
        assert screen.query_one("#login-url", Input).value == URL
        assert screen.query_one("#login-user", Input).value == "mitosis_admin"
        assert screen.query_one("#login-password", Input).has_focus


async def test_cached_token_skips_the_login_screen(make_tui, remember):
    """With a cached token for the last coordinator and user, the app starts logged in."""
    await remember("mitosis_admin", "mitosis_admin")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)
        assert app.identity is not None
        assert app.identity.is_admin
        assert "mitosis_admin (admin)" in screen_text(app)
        await until(pilot, lambda: "◉ live" in screen_text(app), what="connected and live")


async def test_a_401_returns_to_the_login_screen(make_tui, remember, connect):
    """Sessions ended behind the app's back: the next refresh lands on the login screen."""
    await remember("mitosis_admin", "mitosis_admin")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)
        other = await connect("mitosis_admin", "mitosis_admin")
        await other.logout(everywhere=True)

        async def refreshed_into_login() -> bool:
            await pilot.press("ctrl+r")
            await settle(pilot)
            return isinstance(app.screen, LoginScreen)

        # Token checks are cached for up to a second on the coordinator: retry, bounded.
        for _ in range(40):
            if await refreshed_into_login():
                break
            await pilot.pause(0.1)
        assert isinstance(app.screen, LoginScreen)
        assert "session has ended" in login_error(app)
        assert app.connection_state == "logged out"
        await log_in(pilot, "mitosis_admin", "mitosis_admin")
        assert isinstance(app.screen, MainScreen)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_login_screen_snapshot(snap_compare, tmp_path, size):
    """The login screen as a new user first sees it (nothing cached, nothing typed)."""
    app = MitosisApp(URL, cache=CredentialCache(tmp_path / "credentials.json"))

    def steady_cursor(pilot) -> None:
        for field in pilot.app.screen.query(Input):
            field.cursor_blink = False  # a blinking cursor would make the picture random

    assert snap_compare(app, terminal_size=size, run_before=steady_cursor)


async def test_password_from_the_command_line_logs_in_at_start(make_tui):
    """`mitosis-tui -u USER -p PASSWORD` skips the login screen."""
    app = make_tui(username="mitosis_admin", password="mitosis_admin")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)
        assert app.identity is not None


class Switchable(httpx.AsyncBaseTransport):
    """The in-process transport, with a switch that makes the coordinator unreachable."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.down = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)


async def test_the_app_reconnects_by_itself(transport, cache, remember):
    """An unreachable coordinator shows as offline; once it answers, the app is connected."""
    await remember("mitosis_admin", "mitosis_admin")
    switchable = Switchable(transport)
    app = MitosisApp(URL, cache=cache, transport=switchable)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        switchable.down = True
        await pilot.press("f5")
        await until(pilot, lambda: app.connection_state.startswith("offline"), what="offline")
        assert "offline, retrying in 1s" in screen_text(app)
        switchable.down = False
        await until(pilot, lambda: app.connection_state == "connected", what="reconnected")
        assert isinstance(app.screen, MainScreen)
