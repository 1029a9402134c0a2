"""End to end, as a person would: the real `mitosis-tui` in tmux against a real server.

A `mitosis-server` process on a free loopback port, `mitosis-tui -c URL -u alice` in a
private tmux server (80x24, as over SSH); keys go in with send-keys and the screen comes back with
capture-pane. Everything started here is stopped here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from mitosis_sdk.auth import CredentialCache
from mitosis_sdk.client import Client
from mitosis_sdk.schemas import TaskSpec
from tests.conftest import ADMIN, free_port
from tests.e2e.test_embedded_server import Server

BIN = Path(sys.executable).parent


class Tmux:
    """One tmux server of our own (``-L``), so nothing else a user runs is touched."""

    def __init__(self) -> None:
        self.socket = f"mitosis-test-{uuid.uuid4().hex[:8]}"

    def __call__(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10
        )

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "tui").stdout

    def wait_for(self, text: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared; the screen shows:\n{screen}")

    def session_alive(self) -> bool:
        return self("has-session", "-t", "tui").returncode == 0

    def kill(self) -> None:
        self("kill-server")


@pytest.fixture
def tmux():
    session = Tmux()
    yield session
    session.kill()


@pytest.fixture
def server(tmp_path):
    running = Server(tmp_path / "data", free_port(), tmp_path / "server.log")
    running.start()
    yield running
    if running.process and running.process.poll() is None:
        running.process.terminate()
        try:
            running.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            running.process.kill()
            running.process.wait(timeout=10)


def test_log_in_and_work_with_the_tasks_pane_in_a_real_terminal(server, tmux, tmp_path):
    """80x24, as over SSH: the login screen, then the Tasks pane with alice's tasks, live;
    Enter shows a task's details, Esc comes back, 3 shows the groups; :quit exits."""
    with Client(server.url) as admin:
        admin.login(*ADMIN)
        admin.create_user("alice", "pw")
    with Client(server.url) as alice:
        alice.login("alice", "pw")
        alice.create_group("lab")
        first = alice.submit_task(TaskSpec(command=["python", "train.py"], group="lab"))
        alice.submit_task(TaskSpec(command=["sh", "-c", "make report"], labels=["exp1"]))

    home = tmp_path / "home"
    command = [
        "env",
        f"XDG_CONFIG_HOME={home}",
        f"PATH={os.environ.get('PATH', '')}",
        "TERM=xterm-256color",
        str(BIN / "mitosis-tui"),
        "-c",
        server.url,
        "-u",
        "alice",
    ]
    started = tmux("new-session", "-d", "-s", "tui", "-x", "80", "-y", "24", *command)
    assert started.returncode == 0, started.stderr

    tmux.wait_for("Log in to a coordinator")
    tmux.wait_for(server.url)  # remembered from -c
    tmux("send-keys", "-t", "tui", "pw", "Enter")

    tmux.wait_for("2 tasks")
    tmux.wait_for("◉ live")  # connected, and the live event stream is flowing
    screen = tmux.wait_for("Details")  # the footer shows the pane's keys
    assert "STATE" in screen
    assert "COMMAND" in screen
    assert "○ ready" in screen
    assert "lab#1" in screen
    assert "sh -c make report" in screen
    assert "? Help" in screen.splitlines()[-1]

    tmux("send-keys", "-t", "tui", "Down", "Enter")
    tmux.wait_for(f"Task {first.uuid}")
    tmux.wait_for("python train.py")
    tmux("send-keys", "-t", "tui", "Escape")
    tmux.wait_for("2 tasks")
    tmux("send-keys", "-t", "tui", "3")
    tmux.wait_for("My groups")

    tmux("send-keys", "-t", "tui", ":")
    tmux.wait_for("Enter runs")
    tmux("send-keys", "-t", "tui", "quit", "Enter")
    deadline = time.monotonic() + 15
    while tmux.session_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not tmux.session_alive(), tmux.screen()

    cache = CredentialCache(home / "mitosis" / "credentials.json")
    assert cache.last() == (server.url, "alice")
