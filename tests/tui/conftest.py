"""TUI fixtures: MitosisApp wired to a real coordinator served on a loopback port (embedded
SQLite), so the live event and log streams work as they do for a user.

The server's behaviour is tested on SQLite and PostgreSQL elsewhere; here the subject is the
client, so one backend keeps the Pilot tests quick. Time shown in the UI is frozen. The app
always addresses the coordinator as ``http://mitosis.test`` (so screenshots never show the
random port); a transport carries its requests to the real port.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn

from mitosis_sdk.auth import CredentialCache
from mitosis_sdk.client import Client
from mitosis_sdk.schemas import Member, Role
from mitosis_server.app import create_app
from mitosis_server.cli import KEEP_ALIVE_SECONDS
from mitosis_server.config import CoordinatorSettings
from mitosis_server.serving import CoordinatorServer
from mitosis_tui.app import MitosisApp
from mitosis_tui.screens.artifacts import ArtifactsScreen
from tests.conftest import ADMIN, free_port
from tests.e2e.processes import start_worker, stop_process

URL = "http://mitosis.test"
FROZEN_NOW = datetime(2030, 1, 2, 12, 0, 0, tzinfo=UTC)
SIZE = (80, 24)


@pytest.fixture
def db_url(tmp_path, sqlite_template) -> str:
    """Overrides the suite's two-backend fixture: the TUI runs on the embedded database."""
    path = tmp_path / "mitosis.sqlite3"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def served_port() -> int:
    return free_port()


@pytest.fixture
def settings(db_url, tmp_path, served_port) -> CoordinatorSettings:
    """As the suite's settings, with file URLs naming the real port (a worker process
    uploads there; the app's own transfers go there directly)."""
    return CoordinatorSettings(
        data_dir=str(tmp_path / "data"),
        db=db_url,
        password_hash_memory=1024 * 1024,
        public_url=f"http://127.0.0.1:{served_port}",
    )


@pytest.fixture
def served(settings, served_port):
    """The coordinator of this test, served by uvicorn in a thread."""
    coordinator = ServedCoordinator(settings, served_port)
    coordinator.start()
    yield coordinator
    coordinator.stop()


@pytest.fixture
def transport(served) -> httpx.AsyncBaseTransport:
    """Requests to ``http://mitosis.test`` go to the served coordinator."""
    return served.transport()


@pytest.fixture
def cache(tmp_path) -> CredentialCache:
    return CredentialCache(tmp_path / "credentials.json")


@pytest.fixture
def make_tui(transport, cache) -> Callable[..., MitosisApp]:
    """``make_tui()``: the app on the in-process coordinator, with a private token cache."""

    def _make(**kwargs) -> MitosisApp:
        kwargs.setdefault("url", URL)
        return MitosisApp(transport=transport, cache=cache, clock=lambda: FROZEN_NOW, **kwargs)

    return _make


@pytest.fixture
def remember(cache, connect):
    """``await remember("alice", "pw")``: log in as the CLI would, leaving a cached token."""

    async def _remember(username: str, password: str = "pw"):
        client = await connect()
        reply = await client.login(username, password)
        cache.put(URL, reply.username, reply.token, reply.expires_at)
        return client

    return _remember


async def until(pilot, predicate: Callable[[], object], timeout: float = 10.0, what: str = ""):
    """Let the app run until ``predicate()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:
            pass
        await pilot.pause(0.02)
    raise AssertionError(f"timed out waiting for {what or predicate}")


def _busy(app) -> list:
    """Running workers, except the streams that run until stopped (groups ``*-stream``)."""
    return [w for w in app.workers if not w.is_finished and not w.group.endswith("-stream")]


async def settle(pilot, timeout: float = 10.0) -> None:
    """Wait until no worker (network call) runs, including those that finished ones started;
    the live streams (which never finish) are left running."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 2:
        assert time.monotonic() < deadline, "the app never went quiet"
        busy = _busy(pilot.app)
        if busy:
            quiet = 0
            waits = asyncio.gather(*(w.wait() for w in busy), return_exceptions=True)
            await asyncio.wait_for(waits, max(deadline - time.monotonic(), 0.1))
        else:
            quiet += 1
        await pilot.pause()


def screen_text(app: MitosisApp) -> str:
    """What the current screen shows, as plain text lines."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


class ToLoopback(httpx.AsyncBaseTransport):
    """Sends ``http://mitosis.test/...`` to a coordinator on a loopback port.

    Snapshots must not show the random port, so the app keeps the stable URL while the
    requests go to the real server.
    """

    def __init__(self, port: int) -> None:
        self._port = port
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self._port)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class HeldLink(httpx.AsyncBaseTransport):
    """A real link to the object store (the presigned URLs) on which every body, up or
    down, moves its first chunk and then waits for :attr:`released`: a transfer caught
    half-way, as on a slow line, so a test can cancel it while bytes are in flight. Give it
    to the app as its ``transfer_transport``; the coordinator's API does not go through it.
    """

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.moving = asyncio.Event()  # a first chunk went through
        self.released = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            request.stream = _HeldBody(request.stream, self)
        response = await self._inner.handle_async_request(request)
        if request.method == "GET":
            response.stream = _HeldBody(response.stream, self)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class _HeldBody(httpx.AsyncByteStream):
    def __init__(self, stream, link: HeldLink) -> None:
        self._stream, self._link = stream, link

    async def __aiter__(self):
        first = True
        async for chunk in self._stream:
            if not first:
                await self._link.released.wait()
            first = False
            yield chunk
            self._link.moving.set()

    async def aclose(self) -> None:
        await self._stream.aclose()


class ServedCoordinator:
    """The real coordinator served by uvicorn on a loopback port, in a background thread.

    Snapshot tests run the app in an event loop of its own (``App.run``), which cannot share
    the in-process ASGI app of the async fixtures; a served coordinator works from any loop.
    """

    def __init__(self, settings: CoordinatorSettings, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=self.port,
            lifespan="on",
            log_config=None,
            access_log=False,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            # Open event streams notice a closed client only at their next write.
            timeout_graceful_shutdown=1,
        )
        self.server = CoordinatorServer(config)  # as `mitosis-server serve` runs it
        self.thread = threading.Thread(target=self.server.run, name="coordinator", daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive(), "the coordinator thread died"
            assert time.monotonic() < deadline, "the coordinator did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the coordinator did not stop"

    def transport(self) -> ToLoopback:
        return ToLoopback(self.port)


DATABASE = "mitosis.sqlite3"


def serve(base: Path, sqlite_template: Path) -> ServedCoordinator:
    """Start a coordinator on a copy of the migrated template in ``base`` (its SQLite file is
    ``base / DATABASE``), seeded by :func:`seed_lab`; the caller stops it. Its file URLs name
    its real port, so the SDK's transfers reach it as well."""
    shutil.copy(sqlite_template, base / DATABASE)
    port = free_port()
    settings = CoordinatorSettings(
        data_dir=str(base / "data"),
        db=f"sqlite:///{base / DATABASE}",
        password_hash_memory=1024 * 1024,
        bind=f"127.0.0.1:{port}",
    )
    served = ServedCoordinator(settings, port)
    served.start()
    try:
        seed_lab(served.url)
    except BaseException:
        served.stop()
        raise
    return served


@pytest.fixture(scope="module")
def served_coordinator(tmp_path_factory, sqlite_template):
    """A served coordinator with alice (admin of lab, where bob reads and carol writes)."""
    served = serve(tmp_path_factory.mktemp("served"), sqlite_template)
    yield served
    served.stop()


def seed_lab(url: str) -> None:
    """alice, bob and carol; alice admins lab, where bob reads and carol writes."""
    with Client(url) as admin:
        admin.login(*ADMIN)
        for name in ("alice", "bob", "carol"):
            admin.create_user(name, "pw")
    with Client(url) as alice:
        alice.login("alice", "pw")
        alice.create_group("lab")
        alice.update_members(
            "lab",
            [Member(username="bob", role=Role.READ), Member(username="carol", role=Role.WRITE)],
        )


def remember_sync(served: ServedCoordinator, cache: CredentialCache, user: str, pw: str) -> None:
    """Cache a token for ``user`` under the stable URL (blocking, for sync snapshot tests)."""
    with Client(served.url) as client:
        reply = client.login(user, pw)
    cache.put(URL, reply.username, reply.token, reply.expires_at)


def snapshot_app(served: ServedCoordinator, tmp_path: Path, user: str, pw: str = "pw"):
    """The TUI logged in as ``user`` at the stable URL, its clock frozen: what every
    snapshot starts from."""
    cache = CredentialCache(tmp_path / "credentials.json")
    remember_sync(served, cache, user, pw)
    return MitosisApp(URL, cache=cache, transport=served.transport(), clock=lambda: FROZEN_NOW)


async def live(pilot) -> None:
    """Settled, with the live stream connected (the status bar says so in every snapshot)."""
    await settle(pilot)
    await until(pilot, lambda: pilot.app.stream_state == "live", what="the live stream")


@pytest.fixture
async def lab(make_user):
    """alice, admin of group lab (and of her personal group); her SDK client."""
    alice = await make_user("alice")
    await alice.create_group("lab")
    return alice


@pytest.fixture
def real_worker(served, tmp_path, lab):
    """A real ``mitosis-worker`` process acting for alice, running lab's (and alice's) tasks
    in real subprocesses; stopped (SIGTERM, then killed) at the end."""
    process = start_worker(
        served,
        tmp_path / "worker-home",
        tmp_path / "worker.log",
        "-u",
        "alice",
        "-p",
        "pw",
        "-g",
        "lab",
        "--slots",
        "2",
        "--work-dir",
        str(tmp_path / "worker-work"),
        "--grace",
        "2s",
        "--shutdown-grace",
        "5s",
    )
    yield process
    stop_process(process, timeout=20)


async def open_tasks(pilot):
    """The Tasks pane, once its first page and the live stream are there."""
    app = pilot.app
    await until(pilot, lambda: app.main_screen.query("#tasks-pane"), what="the pane")
    pane = app.main_screen.pane("tasks")
    await until(pilot, lambda: pane.window.total is not None, what="the first page")
    await until(pilot, lambda: app.stream_state == "live", what="the live stream")
    await settle(pilot)
    return pane


@pytest.fixture
def alice_tasks(make_tui, remember):
    """``async with alice_tasks() as (pilot, pane)``: the app logged in as alice, on the
    Tasks pane (loaded and live)."""

    @contextlib.asynccontextmanager
    async def run(size: tuple[int, int] = SIZE):
        await remember("alice")
        app = make_tui()
        async with app.run_test(size=size) as pilot:
            yield pilot, await open_tasks(pilot)

    return run


async def until_row(pilot, pane, predicate, what: str, timeout: float = 20.0):
    """Wait until a held row of the Tasks pane satisfies ``predicate``; return it."""
    found = []

    def check() -> bool:
        for index in range(min(pane.window.total or 0, 200)):
            task = pane.window.row(index)
            if task is not None and predicate(task):
                found.append(task)
                return True
        return False

    await until(pilot, check, timeout=timeout, what=what)
    return found[0]


async def download_artifact(pilot, folder: Path):
    """``a`` on the focused task, the folder set, ``d`` on the first artifact; the screen."""
    app = pilot.app
    await pilot.press("a")
    await until(pilot, lambda: isinstance(app.screen, ArtifactsScreen), what="artifacts")
    screen = app.screen
    await until(pilot, lambda: screen.artifacts, what="the list")
    screen.query_one("#artifact-folder").value = str(folder)
    screen.query_one("#artifact-list").focus()
    await pilot.press("d")
    return screen
