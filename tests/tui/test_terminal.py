"""End to end, as a person would: the real `mitosis-tui` in tmux against real processes.

Each test runs a private tmux server (80x24, as over SSH); keys go in with send-keys and the
screen comes back with capture-pane. The first starts `mitosis-server` and a `mitosis-worker`
itself and logs in through the login screen; the others run `just up`, which starts them
both behind a TUI that is already logged in, and check that quitting the TUI, or losing its
terminal, stops them all. Everything started here is stopped here (by pid, even when a test
fails half-way); every directory a process writes to is the test's.
"""

from __future__ import annotations

import contextlib
import os
import signal
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
from tests.e2e.processes import start_worker, stop_process
from tests.e2e.test_embedded_server import Server

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
SLOW = 40.0  # seconds for what waits on processes starting on a busy machine


class Tmux:
    """One tmux server of our own (``-L``), so nothing else a user runs is touched."""

    def __init__(self) -> None:
        self.socket = f"mitosis-test-{uuid.uuid4().hex[:8]}"
        self.started: set[int] = set()  # every process seen below the pane, to stop at the end

    def __call__(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10
        )

    def start(self, *command: str, status: Path | None = None) -> None:
        """Run ``command`` in an 80x24 terminal; with ``status``, a shell around it writes
        its exit status there (tmux 3.3 does not always know it). remain-on-exit keeps
        what the pane showed once the command has ended."""
        if status is not None:
            command = ("sh", "-c", '"$@"; echo $? > "$0"', str(status), *command)
        started = self(
            *("new-session", "-d", "-s", "tui", "-x", "80", "-y", "24", *command),
            *(";", "set-option", "-t", "tui", "remain-on-exit", "on"),
        )
        assert started.returncode == 0, started.stderr

    def keys(self, *keys: str) -> None:
        self("send-keys", "-t", "tui", *keys)

    def type(self, text: str) -> None:
        self("send-keys", "-t", "tui", "-l", text)

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

    def processes(self) -> set[int]:
        """The processes running below the pane now (remembered for :meth:`stop_all`)."""
        shown = self("display-message", "-p", "-t", "tui", "#{pane_pid}").stdout.strip()
        found = descendants(int(shown)) if shown.isdigit() else set()
        self.started |= found
        return found

    def wait_exit(self, status: Path, timeout: float = 20) -> int:
        """The exit status the command of :meth:`start` wrote to ``status``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            written = status.read_text().strip() if status.exists() else ""
            if written.isdigit():
                return int(written)
            time.sleep(0.1)
        running = programs(self.processes())
        raise AssertionError(f"still running: {running}; the screen shows:\n{self.screen()}")

    def kill(self) -> None:
        """Close the terminal, as a dropped SSH link would."""
        self.processes()
        self("kill-server")

    def stop_all(self) -> None:
        """Stop (by pid) whatever a failed test left running below the pane."""
        for pid in self.started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while any(alive(pid) for pid in self.started) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in self.started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rpartition(")")[2].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def programs(pids: set[int]) -> set[str]:
    """The names of what the processes run (``python …/mitosis-server`` → mitosis-server)."""
    names = set()
    for pid in pids:
        try:
            argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        names.update(Path(arg.decode(errors="replace")).name for arg in argv[:2])
    return names


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def private_dirs(base: Path) -> dict[str, str]:
    """Config, cache, data and state under ``base``, so no user file is read or written."""
    return {
        f"XDG_{kind}_HOME": str(base / kind.lower())
        for kind in ("CONFIG", "CACHE", "DATA", "STATE")
    }


@pytest.fixture
def tmux():
    session = Tmux()
    yield session
    session.kill()
    session.stop_all()


@pytest.fixture
def server(tmp_path):
    running = Server(tmp_path / "data", free_port(), tmp_path / "server.log")
    running.start()
    yield running
    stop_process(running.process)


def test_log_in_submit_watch_it_complete_read_its_logs_and_quit(server, tmux, tmp_path):
    """80x24, as over SSH: the login screen, the Tasks pane live; a task from the form runs
    on the real worker to completed, its logs show its output and the end of the stream;
    details, the Groups pane, and :quit ends the client with status 0."""
    with Client(server.url) as admin:
        admin.login(*ADMIN)
        admin.create_user("alice", "pw")
    with Client(server.url) as alice:
        alice.login("alice", "pw")
        alice.create_group("lab")
        # Tagged gpu: the worker below (tag cpu) leaves them queued.
        first = alice.submit_task(
            TaskSpec(command=["python", "train.py"], group="lab", tags=["gpu"])
        )
        alice.submit_task(TaskSpec(command=["sh", "-c", "make report"], tags=["gpu"]))
    worker = start_worker(
        server,
        tmp_path / "worker-home",
        tmp_path / "worker.log",
        *("-u", "alice", "-p", "pw", "-t", "cpu", "--poll-wait", "2s"),
        *("--work-dir", str(tmp_path / "work")),
    )
    try:
        home = tmp_path / "home"
        env = {**private_dirs(home), "PATH": os.environ.get("PATH", ""), "TERM": "xterm-256color"}
        command = ["env", *(f"{k}={v}" for k, v in env.items())]
        status = tmp_path / "status"
        tui = (str(BIN / "mitosis-tui"), "-c", server.url, "-u", "alice")
        tmux.start(*command, *tui, status=status)

        tmux.wait_for("Log in to a coordinator")
        tmux.wait_for(server.url)  # remembered from -c
        tmux.keys("pw", "Enter")
        tmux.wait_for("2 tasks")
        tmux.wait_for("◉ live")  # connected, and the live event stream is flowing
        screen = tmux.wait_for("Details")  # the footer shows the pane's keys
        assert "STATE" in screen
        assert "COMMAND" in screen
        assert "○ ready" in screen
        assert "lab#1" in screen
        assert "sh -c make report" in screen
        assert "? Help" in screen.splitlines()[-1]

        tmux.keys("Down", "Enter")
        tmux.wait_for(f"Task {first.uuid}")
        tmux.wait_for("python train.py")
        tmux.keys("Escape")
        tmux.wait_for("2 tasks")

        tmux.keys("n")
        tmux.wait_for("Submit a task")
        tmux.type("sh -c 'echo hello from tmux; echo and from stderr >&2'")
        tmux.keys("C-s")
        tmux.wait_for("3 tasks")
        tmux.wait_for("✔ completed", timeout=SLOW)  # by the live stream, not a reload
        tmux.keys("l")  # the cursor went to the new task
        tmux.wait_for("hello from tmux")
        screen = tmux.wait_for("live stream ended")
        assert "▌ and from stderr" in screen  # stderr marked
        assert "✔ completed │ ended │ 2 lines" in screen.splitlines()[0]
        tmux.keys("Escape")
        tmux.wait_for("3 tasks")

        tmux.keys("3")
        tmux.wait_for("My groups")
        tmux.keys(":")
        tmux.wait_for("Enter runs")
        tmux.type("quit")
        tmux.keys("Enter")
        assert tmux.wait_exit(status) == 0, tmux.screen()
    finally:
        stop_process(worker)
    cache = CredentialCache(home / "config" / "mitosis" / "credentials.json")
    assert cache.last() == (server.url, "alice")


def just_up(tmux: Tmux, tmp_path: Path, status: Path | None = None) -> set[int]:
    """`just up` in the terminal, on a free port and a data directory of the test's, in
    monochrome (its exit status to ``status``; without, `just` leads the terminal's
    session, as with ``ssh -t host just up``); once the TUI is live, what runs below."""
    port = free_port()
    env = {
        **private_dirs(tmp_path / "home"),
        "MITO_PORT": str(port),
        "MITO_DATA_DIR": str(tmp_path / "data"),
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
        "TERM": "xterm-256color",
        "NO_COLOR": "1",
    }
    command = ["env", *(f"{k}={v}" for k, v in env.items())]
    tmux.start(
        *command, str(BIN / "just"), "--justfile", str(REPO / "justfile"), "up", status=status
    )
    tmux.wait_for("mitosis_admin (admin)", timeout=SLOW)
    tmux.wait_for("◉ live")
    tmux.wait_for("No tasks yet")
    started = tmux.processes()
    assert {"mitosis-server", "mitosis-worker", "mitosis-tui"} <= programs(started)
    return started


def test_just_up_opens_the_admin_tui_with_a_worker_and_quitting_stops_everything(tmux, tmp_path):
    """`just up` (with MITO_PORT and MITO_DATA_DIR): the TUI is logged in as the admin, the
    Workers pane shows the one worker it started, a submitted task runs on it; quitting the
    TUI ends `just up` at once, with the coordinator and the worker gone too."""
    status = tmp_path / "status"
    started = just_up(tmux, tmp_path, status)

    tmux.keys("2")
    tmux.wait_for("● online", timeout=SLOW)
    tmux.keys("1")
    tmux.keys("n")
    tmux.wait_for("Submit a task")
    tmux.type("echo up and running")
    tmux.keys("C-s")
    tmux.wait_for("✔ completed", timeout=SLOW)
    tmux.keys("l")
    tmux.wait_for("up and running")
    tmux.wait_for("live stream ended")
    tmux.keys("Escape")
    tmux.wait_for("1 task")

    tmux.keys("C-c")
    assert tmux.wait_exit(status, timeout=15) == 0, tmux.screen()
    assert [pid for pid in started if alive(pid)] == []


def test_just_up_stops_everything_when_its_terminal_goes_away(tmux, tmp_path):
    """A dropped SSH link under `just up`: `just` keeps the hang-up to itself, but the TUI
    sees its terminal gone and ends, and the coordinator and the worker stop after it."""
    started = just_up(tmux, tmp_path)
    tmux.kill()
    deadline = time.monotonic() + 20
    while [pid for pid in started if alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert programs({pid for pid in started if alive(pid)}) == set()
