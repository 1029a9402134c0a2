"""The real programs: a `mitosis-server` process and `mitosis-tui --batch` processes.

This is the foundation's done-when check, end to end, including a coordinator restart.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import free_port
from tests.e2e.processes import BIN, Server


def batch(server: Server, home: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CONFIG_HOME": str(home)}
    return subprocess.run(
        [str(BIN / "mitosis-tui"), "--batch", "-c", server.url, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_quick_start_survives_a_restart(server, tmp_path):
    home = tmp_path / "home"
    steps = [
        ("login", "mitosis_admin", "mitosis_admin"),
        ("admin", "users", "create", "alice", "pw1"),
        ("admin", "users", "create", "bob", "pw2"),
        ("login", "alice", "pw1"),
        ("groups", "create", "lab"),
        ("groups", "update-user", "lab", "bob:read"),
    ]
    for step in steps:
        result = batch(server, home, *step)
        assert result.returncode == 0, (step, result.stderr)

    server.stop()
    server.start()

    result = batch(server, home, "groups", "get", "lab", "--json")
    assert result.returncode == 0, result.stderr
    members = {m["username"]: m["role"] for m in json.loads(result.stdout)["members"]}
    assert members == {"alice": "admin", "bob": "read"}
    result = batch(server, home, "whoami")
    assert result.returncode == 0
    assert "alice" in result.stdout


def test_unreachable_coordinator_exits_6(tmp_path):
    closed = Server(tmp_path, free_port(), tmp_path / "unused.log")
    result = batch(closed, tmp_path / "home", "login", "mitosis_admin", "x")
    assert result.returncode == 6
    assert "cannot reach the coordinator" in result.stderr


def test_admin_shutdown_stops_the_server_gracefully(server, tmp_path):
    home = tmp_path / "home"
    assert batch(server, home, "login", "mitosis_admin", "mitosis_admin").returncode == 0
    assert batch(server, home, "admin", "shutdown").returncode == 0
    server.assert_stopped_gracefully()


def test_blocking_sdk_client(server):
    """The thin sync wrapper drives the same API from plain blocking code."""
    from mitosis_sdk.client import Client

    with Client(server.url) as mito:
        mito.login("mitosis_admin", "mitosis_admin")
        assert mito.whoami().is_admin
        assert mito.create_group("lab").name == "lab"


def test_a_parked_fetch_does_not_hold_the_shutdown(server):
    """SIGTERM answers a fetch parked for 30 s at once (no task), and the server stops."""
    from mitosis_sdk.client import Client
    from mitosis_sdk.schemas import Grant

    with Client(server.url) as admin:
        admin.login("mitosis_admin", "mitosis_admin")
        registered = admin.register_worker(grants=[Grant(group="mitosis_admin")])
        uuid = registered.worker.uuid
        registered_beat = admin.get_worker(uuid).last_heartbeat
        with (
            Client(server.url, token=registered.token) as worker,
            concurrent.futures.ThreadPoolExecutor(1) as pool,
        ):
            parked = pool.submit(worker.fetch_tasks, uuid, wait=30)
            # The fetch's first look touches the worker; right after it, the fetch parks.
            deadline = time.monotonic() + 20
            while admin.get_worker(uuid).last_heartbeat == registered_beat:
                assert time.monotonic() < deadline
                assert not parked.done()
                time.sleep(0.05)
            stopping = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            assert parked.result(timeout=20).tasks == []
    server.assert_stopped_gracefully()
    assert time.monotonic() - stopping < 20  # not the rest of the fetch's 30 s
