"""Regenerate the README screenshots: ``.venv/bin/python docs/screenshots.py``.

Starts a throw-away ``mitosis-server`` on a free loopback port with a little demo data and
a real ``mitosis-worker`` running some of its tasks, drives ``MitosisApp`` headless with
Textual's pilot and saves SVG screenshots next to this file (login, tasks, task-details,
logs, why-pending, submit, groups, command-line, then workers, worker-details, files,
admin). The app shows the default coordinator URL, so the pictures do not carry the random
port. The fleet shown in the Workers pane is registered through the API once the task
screens are taken (so it cannot take their tasks), and its heartbeats are dated back in the
database, so their ages read as they would live. Everything started is stopped at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from mitosis_sdk.auth import CredentialCache
from mitosis_sdk.client import Client
from mitosis_sdk.schemas import Grant, HostFacts, Member, Role, TaskSpec
from mitosis_tui.app import MitosisApp
from mitosis_tui.live import STREAM_GROUP
from mitosis_tui.screens.logs import LogsScreen

HERE = Path(__file__).parent
SHOWN_URL = "http://127.0.0.1:5000"
SIZE = (100, 28)
EVAL = "for i in $(seq 1 400); do echo batch $i/400 accuracy 0.$((80 + i % 19)); sleep 1; done"
TASKS = [  # (spec, wait for it to end before the next)
    (TaskSpec(command=["python3", "-c", "print('prepared 1,200 samples')"], group="lab"), True),
    (
        TaskSpec(
            command=["sh", "-c", "echo training seed 1; exit 0"],
            group="lab",
            labels=["exp1", "seed1"],
            priority=5,
            terminal_output=True,
        ),
        True,
    ),
    (
        TaskSpec(
            command=["sh", "-c", "echo training seed 2 >&2; exit 3"],
            group="lab",
            labels=["exp1", "seed2"],
            priority=5,
        ),
        True,
    ),
    (TaskSpec(command=["sh", "-c", EVAL], group="lab", labels=["exp1"]), False),
    (TaskSpec(command=["python3", "train.py", "--big"], group="lab", tags=["gpu"]), False),
]


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


def start_worker(url: str, home: Path) -> subprocess.Popen:
    """A real worker for alice's lab (no tags, so the gpu task waits: "why pending")."""
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mitosis-worker"),
            "-c",
            url,
            "-u",
            "alice",
            "-p",
            "pw",
            "-g",
            "lab",
            "-t",
            "cpu",
            "--work-dir",
            str(home / "work"),
            "--shutdown-grace",
            "1s",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "XDG_CONFIG_HOME": str(home), "HOME": str(home)},
    )


def run_tasks(url: str) -> None:
    with Client(url) as alice:
        alice.login("alice", "pw")
        for spec, wait in TASKS:
            task = alice.submit_task(spec).uuid
            if wait:
                alice.wait_tasks([task], poll=0.2)
        time.sleep(4)  # the evaluation prints a few lines


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


def seed_fleet(url: str, data_dir: Path) -> None:
    """Four workers of alice's (one busy, one drained, one late, one lost) and lab's files."""
    with Client(url) as alice:
        alice.login("alice", "pw")
        lab, farm = Grant(group="lab"), Grant(group="render-farm")
        workers = {}
        for host, tags, labels, grants, slots in (
            ("gpu-node-01", ["gpu", "cuda12"], ["rack1"], [lab], 4),
            ("gpu-node-02", ["gpu", "cuda12"], ["rack1"], [lab], 4),
            ("render-07", ["blender"], ["rack3"], [farm], 8),
            ("cpu-node-11", [], ["old"], [lab, farm], 2),
        ):
            facts = HostFacts(
                hostname=host, cores=32, memory=128 * 10**9, os="Linux", arch="x86_64", gpus=2
            )
            workers[host] = alice.register_worker(
                tags=tags, labels=labels, grants=grants, slots=slots, facts=facts, version="0.1.0"
            )
        alice.drain_worker(workers["gpu-node-02"].worker.uuid)
        for seed in (1, 2):
            command = ["python", "train.py", "--seed", str(seed)]
            alice.submit_task(TaskSpec(command=command, group="lab", tags=["gpu"]))
        busy = workers["gpu-node-01"]
        with Client(url, token=busy.token) as worker:
            worker.fetch_tasks(busy.worker.uuid, max_tasks=2)
        local = data_dir.parent / "upload.bin"
        for key, size in (
            ("data/raw/set1.tar.gz", 1_500_000),
            ("data/raw/set2.tar.gz", 2_250_000),
            ("data/labels.csv", 48_213),
            ("models/ckpt-0100.bin", 52_000_000),
            ("README.md", 2_048),
        ):
            local.write_bytes(b"\0" * size)
            alice.upload_attachment("lab", local, key)
    silence = {"gpu-node-01": 3, "gpu-node-02": 12, "render-07": 75, "cpu-node-11": 900}
    moment = datetime.now(UTC).replace(tzinfo=None)
    with contextlib.closing(sqlite3.connect(data_dir / "mitosis.sqlite3")) as db, db:
        for host, registered in workers.items():
            beat = moment - timedelta(seconds=silence[host])
            db.execute(
                "UPDATE workers SET last_heartbeat = ?, created_at = ? WHERE uuid = ?",
                (str(beat), str(moment - timedelta(days=3)), registered.worker.uuid.hex),
            )
        lost = workers["cpu-node-11"].worker.uuid.hex
        db.execute("UPDATE workers SET state = 'lost' WHERE uuid = ?", (lost,))
        db.execute("UPDATE attachments SET updated_at = ?", (str(moment - timedelta(hours=2)),))


async def settle(app, pilot, seconds: float = 0.4) -> None:
    await pilot.pause(seconds)
    # The live stream's worker runs for as long as the app; wait for the others only (an
    # empty list would mean "all" to Textual).
    if calls := [w for w in app.workers if w.group != STREAM_GROUP]:
        await app.workers.wait_for_complete(calls)
    await pilot.pause(0.2)


async def shoot_fleet(app: MitosisApp, pilot) -> None:
    """Workers, a worker's details, lab's data/ folder, and (as the admin) the users."""
    main = app.main_screen
    main.action_show_pane("workers")
    await settle(app, pilot)
    workers = main.pane("workers")
    hosts = [str(workers.table.get_row_at(i)[2]) for i in range(workers.table.row_count)]
    workers.table.move_cursor(row=hosts.index("gpu-node-01"))
    await settle(app, pilot)
    app.save_screenshot("workers.svg", str(HERE))
    await pilot.press("enter")
    await settle(app, pilot)
    app.save_screenshot("worker-details.svg", str(HERE))
    await pilot.press("escape")
    main.action_show_pane("groups")
    await pilot.press("f")
    await settle(app, pilot)
    await pilot.press("enter")  # into data/
    await settle(app, pilot)
    app.save_screenshot("files.svg", str(HERE))
    await pilot.press("colon", *"login mitosis_admin mitosis_admin", "enter")
    await settle(app, pilot, 1.0)
    await pilot.press("4")
    await settle(app, pilot)
    app.save_screenshot("admin.svg", str(HERE))


async def shoot(port: int, data_dir: Path) -> None:
    cache = CredentialCache(data_dir.parent / "credentials.json")
    app = MitosisApp(SHOWN_URL, "alice", cache=cache, transport=ToPort(port))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.3)
        await pilot.press(*"pw")
        app.save_screenshot("login.svg", str(HERE))
        await pilot.press("enter")
        tasks = app.main_screen.pane("tasks")
        await _until(pilot, lambda: tasks.window.total and app.stream_state == "live")
        tasks.table.move_cursor(2)  # the failed training run
        await pilot.pause(0.5)
        app.save_screenshot("tasks.svg", str(HERE))
        await pilot.press("enter")
        await _until(pilot, lambda: getattr(app.screen, "info", None) is not None)
        app.save_screenshot("task-details.svg", str(HERE))
        await pilot.press("escape")
        tasks.table.move_cursor(1)  # the evaluation, running
        await pilot.press("l")
        await _until(pilot, lambda: isinstance(app.screen, LogsScreen) and app.screen.live_lines)
        await pilot.pause(1.0)
        app.save_screenshot("logs.svg", str(HERE))
        await pilot.press("escape")
        tasks.table.move_cursor(0)  # the gpu task nobody can take
        await pilot.press("enter")
        await _until(pilot, lambda: getattr(app.screen, "explain", None) is not None)
        app.save_screenshot("why-pending.svg", str(HERE))
        await pilot.press("escape", "n")
        await pilot.pause(0.3)
        await pilot.press(*"python3 train.py --seed 3")
        await pilot.pause(0.3)
        app.save_screenshot("submit.svg", str(HERE))
        await pilot.press("escape", "3")
        pane = app.main_screen.pane("groups")
        await _until(pilot, lambda: pane.group_list.row_count)
        table = pane.group_list
        names = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        table.move_cursor(row=names.index("lab"))
        await _until(pilot, lambda: pane.details.members_table.row_count)
        pane.details.members_table.focus()
        await pilot.pause(0.3)
        app.save_screenshot("groups.svg", str(HERE))
        await pilot.press("colon", *"groups get lab", "enter")
        await pilot.pause(1.0)
        app.save_screenshot("command-line.svg", str(HERE))
        await asyncio.to_thread(seed_fleet, f"http://127.0.0.1:{port}", data_dir)
        await shoot_fleet(app, pilot)


async def _until(pilot, predicate, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("the screen never showed what the screenshot needs")
        await pilot.pause(0.1)
    await pilot.pause(0.5)


def main() -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp) / "data", port)
        worker = None
        try:
            url = f"http://127.0.0.1:{port}"
            seed(url)
            worker = start_worker(url, Path(tmp))
            run_tasks(url)
            asyncio.run(shoot(port, Path(tmp) / "data"))
        finally:
            for process in (worker, server):
                if process is not None:
                    process.terminate()
                    try:
                        process.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait(timeout=10)
    print(f"wrote the screenshots in {HERE}")


if __name__ == "__main__":
    main()
