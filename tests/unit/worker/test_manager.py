"""The worker manager: spawn, status and stop by pid files, never by process name."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import psutil
import pytest

from mitosis_worker import manager
from tests.unit.worker.conftest import is_running

# Stands in for the daemon: writes its status file, optionally runs a "task" in a session of
# its own, and exits on SIGTERM unless told to ignore it.
KEEPER = "import time; held = b'x' * (64 << 20); time.sleep(600)"
DUMMY = """
import os, signal, subprocess, sys, time
from pathlib import Path
from mitosis_worker.manager import STATUS_FILE_ENV, write_status

KEEPER = "import time; held = b'x' * (64 << 20); time.sleep(600)"
stop = False
def on_term(*_):
    global stop
    stop = True

signal.signal(signal.SIGTERM, signal.SIG_IGN if "--ignore-term" in sys.argv else on_term)
tasks = []
if "--with-task" in sys.argv:
    task = subprocess.Popen(["sleep", "600"], start_new_session=True)
    tasks.append(("task-1", 1, task.pid))
keeper = None
if "--keeper" in sys.argv:  # a child holding 64 MiB, or another process's pid
    keeper = subprocess.Popen([sys.executable, "-c", KEEPER]).pid
for arg in sys.argv:
    if arg.startswith("--keeper-pid="):
        keeper = int(arg.partition("=")[2])
write_status(Path(os.environ[STATUS_FILE_ENV]), worker_uuid=f"uuid-{os.getpid()}",
             state="running" if tasks else "idle", tasks=tasks, keeper_pid=keeper)
print("worker up", flush=True)
while not stop:
    time.sleep(0.02)
print("worker down", flush=True)
"""


@pytest.fixture
def state_dir(tmp_path):
    path = tmp_path / "state"
    yield path
    manager.stop(path, force=True)


@pytest.fixture
def dummy(tmp_path) -> list[str]:
    script = tmp_path / "dummy_worker.py"
    script.write_text(DUMMY)
    return [sys.executable, str(script)]


def wait_for_status(state_dir: Path, count: int, within: float = 10.0) -> list[manager.WorkerInfo]:
    deadline = time.monotonic() + within
    while True:
        infos = manager.status(state_dir, sample=0)
        if len(infos) == count and all(info.worker_uuid for info in infos):
            return infos
        assert time.monotonic() < deadline, f"workers did not report: {infos}"
        time.sleep(0.05)


def test_spawn_status_stop(state_dir, dummy):
    """Two spawned workers show up alive with their UUIDs; stop ends both and removes files."""
    spawned = manager.spawn(2, dummy, state_dir=state_dir)
    assert [w.name for w in spawned] == ["worker-1", "worker-2"]
    pid_record = json.loads(spawned[0].pid_file.read_text())
    assert set(pid_record) == {"pid", "create_time", "argv", "log"}
    assert pid_record["argv"] == dummy

    wait_for_status(state_dir, 2)
    infos = manager.status(state_dir, sample=0.1)
    for info, worker in zip(infos, spawned, strict=True):
        assert info.alive
        assert info.pid == worker.record.pid
        assert info.worker_uuid == f"uuid-{worker.record.pid}"
        assert info.state == "idle"
        assert (info.rss or 0) > 0
        assert info.cpu_percent is not None
        assert (info.uptime or 0) >= 0

    results = manager.stop(state_dir, timeout=10)
    assert [(r.name, r.result) for r in results] == [
        ("worker-1", "stopped"),
        ("worker-2", "stopped"),
    ]
    assert not any(is_running(w.record.pid) for w in spawned)
    assert list(state_dir.glob("*.pid")) == []
    assert list(state_dir.glob("*.status.json")) == []
    assert "worker down" in Path(spawned[0].record.log).read_text()


def held_64_mib(process: psutil.Process) -> None:
    for _ in range(1000):  # bounded: 10 s for it to start and touch its memory
        if process.memory_info().rss > 64 << 20:
            return
        time.sleep(0.01)
    raise AssertionError("the 64 MiB were never touched")


def test_status_counts_the_tree_keeper_in_and_only_the_workers_own(state_dir, dummy):
    """CPU and RSS are the daemon's and its keeper's; a pid the status names that is not
    the worker's child is not counted."""
    (mine,) = manager.spawn(1, [*dummy, "--keeper"], state_dir=state_dir)
    wait_for_status(state_dir, 1)
    held_64_mib(psutil.Process(mine.record.pid).children()[0])
    (info,) = manager.status(state_dir, sample=0.1)
    assert info.rss > 64 << 20
    manager.stop(state_dir, force=True)

    stranger = subprocess.Popen([sys.executable, "-c", KEEPER])
    try:
        held_64_mib(psutil.Process(stranger.pid))
        manager.spawn(1, [*dummy, f"--keeper-pid={stranger.pid}"], state_dir=state_dir)
        (info,) = wait_for_status(state_dir, 1)
        assert info.rss < 64 << 20
    finally:
        stranger.kill()
        stranger.wait()


def test_workers_are_detached(state_dir, dummy):
    """A spawned worker leads its own session and reads /dev/null, like a daemon."""
    (worker,) = manager.spawn(1, dummy, state_dir=state_dir)
    pid = worker.record.pid
    assert os.getsid(pid) == pid
    assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"


def test_spawn_adds_numbers_after_running_workers(state_dir, dummy):
    """A second spawn continues the numbering instead of reusing a running worker's name."""
    manager.spawn(1, dummy, state_dir=state_dir)
    (second,) = manager.spawn(1, dummy, state_dir=state_dir)
    assert second.name == "worker-2"


def test_stale_pid_file_of_dead_process(state_dir, dummy):
    """A worker that died shows as dead; stop reports it stale and removes its files."""
    (worker,) = manager.spawn(1, dummy, state_dir=state_dir)
    os.kill(worker.record.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while manager.status(state_dir, sample=0)[0].alive:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    (info,) = manager.status(state_dir, sample=0)
    assert (info.alive, info.uptime, info.rss) == (False, None, None)
    assert [r.result for r in manager.stop(state_dir)] == ["stale"]
    assert not worker.pid_file.exists()


def test_recycled_pid_is_never_signalled(state_dir):
    """A pid file naming a live process with another start time (a recycled pid) is stale."""
    state_dir.mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "600"])
    try:
        record = manager.PidRecord(
            pid=sleeper.pid, create_time=1.0, argv=["mitosis-worker"], log="/dev/null"
        )
        (state_dir / "worker-1.pid").write_bytes(msgspec.json.encode(record))
        assert manager.status(state_dir, sample=0)[0].alive is False
        assert [r.result for r in manager.stop(state_dir, force=True)] == ["stale"]
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait(5)


def test_unreadable_pid_file_is_stale(state_dir):
    """Garbage in a pid file is reported, then removed by stop."""
    state_dir.mkdir(parents=True)
    (state_dir / "worker-3.pid").write_text("not json")
    (info,) = manager.status(state_dir, sample=0)
    assert (info.name, info.pid, info.alive) == ("worker-3", None, False)
    assert [(r.name, r.result) for r in manager.stop(state_dir)] == [("worker-3", "stale")]
    assert not (state_dir / "worker-3.pid").exists()


def test_stop_kills_worker_ignoring_sigterm_after_timeout(state_dir, dummy):
    """A worker that does not exit on SIGTERM within the timeout is killed."""
    (worker,) = manager.spawn(1, [*dummy, "--ignore-term"], state_dir=state_dir)
    wait_for_status(state_dir, 1)
    began = time.monotonic()
    assert [r.result for r in manager.stop(state_dir, timeout=0.5)] == ["killed"]
    assert time.monotonic() - began >= 0.5
    assert not is_running(worker.record.pid)


def test_force_stop_kills_worker_and_its_task_groups(state_dir, dummy):
    """stop --force kills at once, and the task process groups listed in the status file too."""
    manager.spawn(1, [*dummy, "--with-task"], state_dir=state_dir)
    (info,) = wait_for_status(state_dir, 1)
    assert info.tasks == ["task-1"]
    status = json.loads((state_dir / "worker-1.status.json").read_text())
    task_pid = status["tasks"][0]["pgid"]
    assert is_running(task_pid)
    assert [r.result for r in manager.stop(state_dir, force=True)] == ["killed"]
    deadline = time.monotonic() + 5
    while is_running(task_pid):
        assert time.monotonic() < deadline, "the task outlived its force-stopped worker"
        time.sleep(0.05)


def test_spawn_of_missing_program_leaves_no_pid_file(state_dir):
    """A command that cannot start raises and leaves no pid file behind."""
    with pytest.raises(FileNotFoundError):
        manager.spawn(1, ["/no/such/worker"], state_dir=state_dir)
    assert list(state_dir.glob("*.pid")) == []


def test_status_file_of_earlier_process_is_ignored(state_dir, dummy):
    """Status written by another pid under the same name is not shown for this worker."""
    (worker,) = manager.spawn(1, [*dummy, "--ignore-term"], state_dir=state_dir)
    wait_for_status(state_dir, 1)
    manager.write_status(state_dir / "worker-1.status.json", worker_uuid="old", state="idle")
    (info,) = manager.status(state_dir, sample=0)
    assert info.alive
    assert info.worker_uuid is None
    assert psutil.pid_exists(worker.record.pid)
