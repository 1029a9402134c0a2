"""Snapshots of the Tasks pane, task details and the Logs view at 80x24 and 160x48.

Deterministic: the app's clock is frozen, and the scene is made through the real API (a
worker client claims, reports and ships lines), then its random parts — task and worker
UUIDs, times — are set to fixed values in the coordinator's database.
"""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from datetime import timedelta

import pytest

from mitosis_sdk.client import Client
from mitosis_sdk.schemas import Grant, Role, TaskPhase, TaskSpec
from mitosis_server.config import CoordinatorSettings
from mitosis_tui.app import MitosisApp
from mitosis_tui.screens.logs import LogsScreen
from tests.conftest import ADMIN, free_port
from tests.tui.conftest import (
    FROZEN_NOW,
    ServedCoordinator,
    open_tasks,
    settle,
    snapshot_app,
    until,
)

SIZES = pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
SCENE = [  # (command, tags, labels, priority, minutes before FROZEN_NOW it was submitted)
    (["python", "train.py", "--seed", "1"], ["gpu"], ["exp1", "seed1"], 5, 58),
    (["python", "train.py", "--seed", "2"], ["gpu"], ["exp1", "seed2"], 5, 57),
    (["python", "eval.py", "--all"], [], ["exp1"], 0, 31),
    (["sh", "-c", "make report"], [], [], 0, 12),
    (["python", "train.py", "--seed", "3"], ["gpu"], ["exp1"], 1, 3),
]
WORKER_UUID = uuid.uuid5(uuid.NAMESPACE_URL, "mitosis-scene-worker").hex
LOG = [("stdout", "loading checkpoint epoch-3.pt"), ("stdout", "evaluating 1,200 samples")]
LOG += [("stdout", f"batch {n:>2}/12  accuracy 0.{80 + n}") for n in range(1, 8)]
LOG += [("stderr", "warning: sample 0412 has no label, skipped")]


def _fixed(n: int) -> str:
    """Task ``n``'s UUID (32 hex digits, as SQLite keeps it): the same in every run."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"mitosis-scene-task-{n}").hex


def _at(minutes: float) -> str:
    moment = FROZEN_NOW - timedelta(minutes=minutes)
    return moment.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def play_scene(url: str) -> tuple[list[str], Client, str]:
    """The tasks through the real API; the worker keeps the third one running."""
    with Client(url) as admin:
        admin.login(*ADMIN)
        admin.create_user("alice", "pw")
    with Client(url) as alice:
        alice.login("alice", "pw")
        alice.create_group("lab")
        grants = [Grant(group="lab", role=Role.WRITE)]
        registered = alice.register_worker(grants=grants, slots=1, version="test")
        worker = Client(url, registered.token)
        wid = str(registered.worker.uuid)
        uuids = []
        for index, (command, tags, labels, priority, _) in enumerate(SCENE):
            spec = TaskSpec(
                command=command,
                group="lab",
                tags=tags,
                labels=labels,
                priority=priority,
                timeout="1d",
                terminal_output=index == 0,
            )
            uuids.append(str(alice.submit_task(spec).uuid))
            if index < 3:
                held = worker.fetch_tasks(wid).tasks[0]
                for phase in (TaskPhase.WAITING, TaskPhase.SPAWNED):
                    worker.report_phase(wid, held.task, held.attempt, phase)
                if index < 2:
                    worker.report_result(wid, held.task, held.attempt, exit_code=index)
        alice.cancel_tasks([uuids[4]])
    return uuids, worker, wid


def _dashed(hex32: str) -> str:
    return f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:]}"


def fix_scene(db: str, uuids: list[str]) -> None:
    """Fixed UUIDs and times for the tasks (the worker keeps its own until the end)."""
    with sqlite3.connect(db) as conn:
        for n, (task, scene) in enumerate(zip(uuids, SCENE, strict=True), start=1):
            minutes = scene[4]
            conn.execute(
                "UPDATE tasks SET uuid = ?, created_at = ?,"
                " started_at = CASE WHEN started_at IS NULL THEN NULL ELSE ? END,"
                " finished_at = CASE WHEN finished_at IS NULL THEN NULL ELSE ? END"
                " WHERE uuid = ?",
                (
                    _fixed(n),
                    _at(minutes),
                    _at(minutes - 1),
                    _at(minutes - 3.5),
                    task.replace("-", ""),
                ),
            )
            conn.execute(
                "UPDATE task_attempts SET started_at = ?,"
                " ended_at = CASE WHEN ended_at IS NULL THEN NULL ELSE ? END"
                " WHERE task_id = (SELECT id FROM tasks WHERE uuid = ?)",
                (_at(minutes - 1), _at(minutes - 3.5), _fixed(n)),
            )


def fix_worker(db: str, wid: str) -> None:
    """The worker's fixed UUID, once it has shipped its lines (its token names the old one)."""
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE workers SET uuid = ? WHERE uuid = ?", (WORKER_UUID, wid.replace("-", ""))
        )


@pytest.fixture(scope="module")
def scene(tmp_path_factory, sqlite_template):
    """A served coordinator holding the scene (the running task has live log lines)."""
    base = tmp_path_factory.mktemp("scene")
    db = base / "mitosis.sqlite3"
    shutil.copy(sqlite_template, db)
    port = free_port()
    settings = CoordinatorSettings(
        data_dir=str(base / "data"),
        db=f"sqlite:///{db}",
        password_hash_memory=1024 * 1024,
        public_url=f"http://127.0.0.1:{port}",
        heartbeat_timeout="1d",  # the silent scene worker is never declared lost
    )
    served = ServedCoordinator(settings, port)
    served.start()
    try:
        uuids, worker, wid = play_scene(served.url)
        fix_scene(str(db), uuids)
        running = _dashed(_fixed(3))
        worker.ship_logs(wid, running, 1, LOG, first_line=1)
        worker.close()
        fix_worker(str(db), wid)
        yield served, running
    finally:
        served.stop()


def scene_app(scene, tmp_path) -> MitosisApp:
    served, _ = scene
    return snapshot_app(served, tmp_path, "alice")


async def _at_rest(pilot) -> None:
    """Nothing moving: no call in flight, no cursor blinking."""
    await settle(pilot)
    await pilot.pause(0.3)


async def _scene_shown(pilot, row: int | None = None, key: str | None = None):
    """The Tasks pane with the whole scene; then ``key`` pressed on ``row``."""
    pane = await open_tasks(pilot)
    await until(pilot, lambda: pane.window.total == len(SCENE), what="the scene")
    if key is not None:
        pane.table.move_cursor(row)
        await pilot.press(key)
    return pane


@SIZES
def test_tasks_pane_snapshot(snap_compare, scene, tmp_path, size):
    """Five tasks of lab, newest first: cancelled, ready, running, failed, completed."""

    async def shown(pilot) -> None:
        await _scene_shown(pilot)
        await _at_rest(pilot)

    assert snap_compare(scene_app(scene, tmp_path), terminal_size=size, run_before=shown)


@SIZES
def test_task_details_snapshot(snap_compare, scene, tmp_path, size):
    """The failed task (seed 2): result, spec and its attempt on the scene worker."""

    async def shown(pilot) -> None:
        await _scene_shown(pilot, 3, "enter")
        await until(pilot, lambda: getattr(pilot.app.screen, "info", None), what="details")
        await _at_rest(pilot)

    assert snap_compare(scene_app(scene, tmp_path), terminal_size=size, run_before=shown)


@SIZES
def test_logs_view_snapshot(snap_compare, scene, tmp_path, size):
    """The running task's live log (eval.py): stdout and a stderr line, following."""

    async def shown(pilot) -> None:
        await _scene_shown(pilot, 2, "l")
        await until(pilot, lambda: isinstance(pilot.app.screen, LogsScreen), what="logs")
        view = pilot.app.screen.view
        await until(pilot, lambda: len(view.entries) == len(LOG), what="the lines")
        await _at_rest(pilot)

    assert snap_compare(scene_app(scene, tmp_path), terminal_size=size, run_before=shown)
