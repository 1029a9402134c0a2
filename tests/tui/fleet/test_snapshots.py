"""Snapshots of the fleet panes at 80×24 and 160×48: Workers, a worker's details, the Files
tab and the Admin pane.

The data is real (registered through the API, a task claimed by a worker, files uploaded),
then its ids and times are pinned in the database and the app's clock is frozen, and local
time is UTC, so every run draws the same screen.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest

from mitosis_sdk.client import Client
from mitosis_sdk.schemas import Grant, HostFacts, Role, TaskSpec
from mitosis_tui.widgets.workers_pane import WorkersPane
from tests.conftest import ADMIN
from tests.tui.conftest import DATABASE, FROZEN_NOW, live, serve, settle, snapshot_app, until
from tests.tui.fleet.conftest import pin_rows
from tests.tui.fleet.test_attachments import enter, open_files

SIZES = pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
WORKERS = {  # hostname: (pinned uuid, seconds since the last heartbeat)
    "gpu-node-01": ("1f0e2d3c-4b5a-4697-8877-665544332211", 4),
    "gpu-node-02": ("2e9d8c7b-6a59-4483-9271-605f4e3d2c1b", 75),
    "cpu-node-01": ("3a4b5c6d-7e8f-4901-a2b3-c4d5e6f70819", 600),
}
TASK = "7e57a5c0-0000-4000-8000-000000000001"
FILES = {
    "data/raw/set1.tar.gz": 1_500_000,
    "data/raw/set2.tar.gz": 2_250_000,
    "data/labels.csv": 48_213,
    "models/ckpt-0100.bin": 52_000_000,
    "README.md": 2_048,
}


@pytest.fixture(autouse=True)
def utc_local_time(monkeypatch):
    """Tables show local times: make local time UTC for the snapshots' sake."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def register(alice: Client, host: str, **fields):
    facts = HostFacts(
        hostname=host, cores=32, memory=256 * 10**9, os="Linux", arch="x86_64", gpus=4
    )
    return alice.register_worker(facts=facts, version="0.1.0", **fields)


def seed_fleet(url: str, base) -> None:
    """Three workers (one running a task, one drained, one lost) and files in lab."""
    with Client(url) as alice:
        alice.login("alice", "pw")
        lab = [Grant(group="lab", role=Role.WRITE)]
        busy = register(
            alice, "gpu-node-01", tags=["gpu", "cuda12"], labels=["rack1"], grants=lab, slots=4
        )
        drained = register(alice, "gpu-node-02", tags=["gpu"], labels=["rack2"], grants=lab)
        lost = register(alice, "cpu-node-01", labels=["old"])
        alice.drain_worker(drained.worker.uuid)
        task = alice.submit_task(
            TaskSpec(command=["python", "train.py", "--seed", "1"], group="lab", tags=["gpu"])
        )
        with Client(url, token=busy.token) as worker:
            worker.fetch_tasks(busy.worker.uuid, max_tasks=1)
        for key, size in FILES.items():
            local = base / "upload.bin"
            local.write_bytes(b"\0" * size)
            alice.upload_attachment("lab", local, key)
    database = base / DATABASE
    for info in (busy.worker, drained.worker, lost.worker):
        pinned, silent = WORKERS[info.facts.hostname]
        pin_rows(
            database,
            "workers",
            f"uuid = '{info.uuid.hex}'",
            uuid=uuid.UUID(pinned).hex,
            created_at=FROZEN_NOW - timedelta(days=2),
            last_heartbeat=FROZEN_NOW - timedelta(seconds=silent),
        )
    pin_rows(
        database, "workers", f"uuid = '{uuid.UUID(WORKERS['cpu-node-01'][0]).hex}'", state="lost"
    )
    pin_rows(
        database,
        "tasks",
        f"uuid = '{task.uuid.hex}'",
        uuid=uuid.UUID(TASK).hex,
        created_at=FROZEN_NOW - timedelta(minutes=5),
    )
    pin_rows(
        database,
        "attachments",
        "1 = 1",
        created_at=FROZEN_NOW - timedelta(hours=3),
        updated_at=FROZEN_NOW - timedelta(hours=1),
    )
    pin_rows(database, "users", "1 = 1", created_at=FROZEN_NOW - timedelta(days=30))


@pytest.fixture(scope="module")
def fleet_site(tmp_path_factory, sqlite_template):
    base = tmp_path_factory.mktemp("fleet")
    served = serve(base, sqlite_template)
    try:
        seed_fleet(served.url, base)
        yield served
    finally:
        served.stop()


async def show_workers(pilot) -> WorkersPane:
    await live(pilot)
    pilot.app.main_screen.action_show_pane("workers")
    pane = pilot.app.query_one(WorkersPane)
    await until(pilot, lambda: pane.table.row_count == 3, what="three workers")
    hosts = [str(pane.table.get_row_at(i)[2]) for i in range(3)]
    pane.table.move_cursor(row=hosts.index("gpu-node-01"))
    await settle(pilot)
    return pane


@SIZES
def test_workers_pane_snapshot(snap_compare, fleet_site, tmp_path, size):
    """State (symbol and word), host, slots, late and lost heartbeats, tags, grants."""
    app = snapshot_app(fleet_site, tmp_path, "alice")
    assert snap_compare(app, terminal_size=size, run_before=show_workers)


@SIZES
def test_worker_details_snapshot(snap_compare, fleet_site, tmp_path, size):
    """Everything about the busy worker, with its running task."""
    app = snapshot_app(fleet_site, tmp_path, "alice")

    async def details(pilot) -> None:
        await show_workers(pilot)
        await pilot.press("enter")
        await until(
            pilot,
            lambda: "train.py" in str(pilot.app.screen.query_one("#worker-tasks").get_row_at(0)),
            what="the running task",
        )
        await settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=details)


@SIZES
def test_attachments_browser_snapshot(snap_compare, fleet_site, tmp_path, size):
    """lab's data/ folder: '..', a sub-folder with its totals, a file."""
    app = snapshot_app(fleet_site, tmp_path, "alice")

    async def files(pilot) -> None:
        await live(pilot)
        browser = await open_files(pilot)
        await enter(pilot, browser, "data/", "data/")

    assert snap_compare(app, terminal_size=size, run_before=files)


@SIZES
def test_admin_pane_snapshot(snap_compare, fleet_site, tmp_path, size):
    """Users with admin flag, state and group quota use."""
    app = snapshot_app(fleet_site, tmp_path, *ADMIN)

    async def admin(pilot) -> None:
        await live(pilot)
        await pilot.press("4")
        await until(
            pilot,
            lambda: "carol" in str(pilot.app.screen.query_one("#users").get_row_at(2)),
            what="the users",
        )
        await settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=admin)
