"""Regenerate the README screenshots: ``.venv/bin/python docs/screenshots.py``.

Starts a throw-away ``mitosis-server`` on a free loopback port with a little demo data,
drives ``MitosisApp`` headless with Textual's pilot and saves SVG screenshots next to this
file (login.svg, groups.svg, command-line.svg). The app shows the default coordinator URL,
so the pictures do not carry the random port. Everything started is stopped at the end.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

from mitosis_sdk.auth import CredentialCache
from mitosis_sdk.client import Client
from mitosis_sdk.schemas import Member, Role
from mitosis_tui.app import MitosisApp

HERE = Path(__file__).parent
SHOWN_URL = "http://127.0.0.1:5000"
SIZE = (100, 28)
NOON = datetime(2030, 1, 2, 12, 0, 0).astimezone()


class ToPort(httpx.AsyncBaseTransport):
    """Requests to SHOWN_URL go to the demo server's real port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(host="127.0.0.1", port=self.port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(data_dir: Path, port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mitosis-server"),
            "--data-dir",
            str(data_dir),
            "-b",
            f"127.0.0.1:{port}",
            "--password-hash-memory",
            "1MiB",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if server.poll() is not None:
            raise SystemExit("mitosis-server exited during start-up")
        time.sleep(0.1)
    server.kill()
    raise SystemExit("mitosis-server did not become ready")


def seed(url: str) -> None:
    with Client(url) as admin:
        admin.login("mitosis_admin", "mitosis_admin")
        for name in ("alice", "bob", "carol", "dave"):
            admin.create_user(name, "pw")
    with Client(url) as alice:
        alice.login("alice", "pw")
        for group in ("genomics", "lab", "render-farm"):
            alice.create_group(group)
        alice.update_members(
            "lab",
            [
                Member(username="bob", role=Role.READ),
                Member(username="carol", role=Role.WRITE),
                Member(username="dave", role=Role.ADMIN),
            ],
        )


async def shoot(port: int, cache_dir: Path) -> None:
    cache = CredentialCache(cache_dir / "credentials.json")
    app = MitosisApp(SHOWN_URL, "alice", cache=cache, transport=ToPort(port), clock=lambda: NOON)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.3)
        await pilot.press(*"pw")
        app.save_screenshot("login.svg", str(HERE))
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause(0.3)
        pane = app.main_screen.pane("groups")
        table = pane.group_list
        names = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        table.move_cursor(row=names.index("lab"))
        await pilot.pause(0.5)
        await app.workers.wait_for_complete()
        pane.details.members_table.focus()
        await pilot.pause(0.3)
        app.save_screenshot("groups.svg", str(HERE))
        await pilot.press("colon", *"groups get lab", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause(0.3)
        app.save_screenshot("command-line.svg", str(HERE))


def main() -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp) / "data", port)
        try:
            seed(f"http://127.0.0.1:{port}")
            asyncio.run(shoot(port, Path(tmp)))
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"wrote login.svg, groups.svg and command-line.svg in {HERE}")


if __name__ == "__main__":
    main()
