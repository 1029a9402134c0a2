"""Real `mitosis-worker` processes against real `mitosis-server` processes.

The failure proofs of the worker issue: a coordinator killed mid-task and a worker killed
mid-task, with the task's result recorded exactly once either way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from mitosis_sdk.client import Client
from mitosis_sdk.schemas import TaskSpec
from tests.conftest import free_port
from tests.e2e.processes import BIN, Server, start_worker, stop_process

WORKER = ("-u", "alice", "-p", "pw", "--heartbeat-interval", "0.5s", "--poll-wait", "2s")


@pytest.fixture
def fast_server(tmp_path):
    """A coordinator that declares a worker lost after 2 s of silence."""
    running = Server(
        tmp_path / "data",
        free_port(),
        tmp_path / "server.log",
        "--heartbeat-timeout",
        "2s",
        "--liveness-interval",
        "0.5s",
    )
    running.start()
    yield running
    stop_process(running.process, signal.SIGKILL)


def make_alice(server: Server) -> Client:
    with Client(server.url) as admin:
        admin.login("mitosis_admin", "mitosis_admin")
        admin.create_user("alice", "pw")
    alice = Client(server.url)
    alice.login("alice", "pw")
    return alice


def wait_for(alice: Client, task, states: set[str], timeout: float = 40.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            info = alice.get_task(task)
        except Exception:  # the coordinator may be restarting
            time.sleep(0.2)
            continue
        if info.state in states:
            return info
        time.sleep(0.1)
    raise AssertionError(f"task {task} never reached {states}")


def test_coordinator_restart_mid_task_loses_nothing(server, tmp_path):
    """Kill -9 the coordinator while a task runs, start it again: the result arrives once."""
    alice = make_alice(server)
    worker = start_worker(server, tmp_path / "home", tmp_path / "worker.log", *WORKER)
    try:
        task = alice.submit_task(TaskSpec(command=["sleep", "2"])).uuid
        wait_for(alice, task, {"running"})
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)
        time.sleep(1.0)
        server.start()
        info = wait_for(alice, task, {"completed", "failed"})
        assert info.state == "completed", (tmp_path / "worker.log").read_text()
        assert info.attempt == 1
        assert worker.poll() is None, "the worker rode out the restart"
    finally:
        assert stop_process(worker) == 0
        alice.close()


def test_killed_worker_task_is_requeued_and_finished_elsewhere(fast_server, tmp_path):
    """Kill -9 a worker mid-task: after the heartbeat timeout another worker completes it."""
    alice = make_alice(fast_server)
    first = start_worker(fast_server, tmp_path / "home", tmp_path / "first.log", *WORKER)
    second = None
    try:
        task = alice.submit_task(TaskSpec(command=["sleep", "1"])).uuid
        wait_for(alice, task, {"running"})
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        second = start_worker(fast_server, tmp_path / "home", tmp_path / "second.log", *WORKER)
        info = wait_for(alice, task, {"completed", "failed"})
        assert info.state == "completed"
        assert info.attempt == 2
    finally:
        if second is not None:
            assert stop_process(second) == 0
        alice.close()


def test_worker_with_an_unreachable_coordinator_says_so(tmp_path):
    """A wrong coordinator URL at start-up: retries, then a clear message and exit code 6."""
    nowhere = Server(tmp_path, free_port(), tmp_path / "unused.log")
    worker = start_worker(
        nowhere,
        tmp_path / "home",
        tmp_path / "w.log",
        "-u",
        "x",
        "-p",
        "y",
        "--connect-timeout",
        "1s",
    )
    assert worker.wait(timeout=30) == 6
    assert "cannot reach the coordinator" in (tmp_path / "w.log").read_text()


def test_manager_spawns_lists_and_stops_workers(server, tmp_path):
    """`manager spawn 2`, `status` (pid, worker UUID), `stop`: tracked by pid files."""
    make_alice(server).close()
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "home")}
    state = ["--state-dir", str(tmp_path / "state")]

    def manager(*argv: str) -> str:
        result = subprocess.run(
            [str(BIN / "mitosis-worker"), "manager", *state, *argv],
            capture_output=True,
            text=True,
            timeout=90,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    manager("spawn", "2", "-c", server.url, *WORKER, "--work-dir", str(tmp_path / "work"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = manager("status").splitlines()[1:]
        if len(rows) == 2 and all(row.split("\t")[6] != "-" for row in rows):
            break
        time.sleep(0.3)
    assert len(rows) == 2
    assert all(row.split("\t")[2] == "yes" for row in rows)
    with Client(server.url) as alice:
        alice.login("alice", "pw")
        uuids = {str(w.uuid) for w in alice.query_workers().workers if w.state == "online"}
    assert {row.split("\t")[6] for row in rows} <= uuids
    stopped = manager("stop").splitlines()
    assert [line.split("\t")[2] for line in stopped] == ["stopped", "stopped"]
    assert manager("status").splitlines()[1:] == []
