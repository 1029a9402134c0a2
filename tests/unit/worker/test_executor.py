"""The executor: attempt directory, clean environment, process-group kills, outcomes."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from mitosis_worker.executor import BASE_ENV_KEYS, Phase, Reason
from tests.unit.worker.conftest import PY, Collector, is_running, live_members

# Prints the pid of a grandchild that ignores SIGTERM, then sleeps; ignores SIGTERM itself
# when asked, so only SIGKILL can end it.
TREE = """
import signal, subprocess, sys, time
if "stubborn" in sys.argv:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
print("grandchild", child.pid, flush=True)
time.sleep(600)
"""


def read_env(attempt) -> dict[str, str]:
    raw = (attempt.dirs.std_log / "stdout.log").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if item)


async def test_environment_is_exactly_base_spec_and_mito(make_attempt):
    """The task sees the base keys it was given, the spec's variables and MITO_*; no more."""
    worker_env = {
        "PATH": os.environ["PATH"],
        "HOME": "/home/someone",
        "LANG": "C.UTF-8",
        "MITO_WORKER_TOKEN": "secret",
        "PYTHONPATH": "/leak",
    }
    attempt = make_attempt(
        ["env", "-0"],
        base_env=worker_env,
        env={"SEED": "1", "HOME": "/spec/home", "MITO_RESULT_DIR": "/spoofed"},
        upstream_uuid="up-1",
        array_index=7,
        attempt=2,
        terminal_output=True,
    )
    outcome = await asyncio.wait_for(attempt.run(), 10)
    assert outcome.reason is Reason.COMPLETED
    dirs = attempt.dirs
    assert read_env(attempt) == {
        "PATH": os.environ["PATH"],
        "HOME": "/spec/home",
        "LANG": "C.UTF-8",
        "SEED": "1",
        "MITO_TASK_UUID": attempt.spec.task_uuid,
        "MITO_RESULT_DIR": str(dirs.result),
        "MITO_EXEC_DIR": str(dirs.exec),
        "MITO_RESOURCE_DIR": str(dirs.resources),
        "MITO_NEW_TASK": str(dirs.new_task),
        "MITO_UPSTREAM_TASK_UUID": "up-1",
        "MITO_ARRAY_INDEX": "7",
        "MITO_ATTEMPT": "2",
    }


async def test_environment_from_worker_keeps_only_basics(make_attempt, monkeypatch):
    """With the worker's real environment, only BASE_ENV_KEYS pass; optional MITO_* are unset."""
    monkeypatch.setenv("MITO_WORKER_TOKEN", "secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    attempt = make_attempt(["env", "-0"], terminal_output=True)
    await asyncio.wait_for(attempt.run(), 10)
    env = read_env(attempt)
    mito = {key for key in env if key.startswith("MITO_")}
    assert mito == {
        "MITO_TASK_UUID",
        "MITO_RESULT_DIR",
        "MITO_EXEC_DIR",
        "MITO_RESOURCE_DIR",
        "MITO_NEW_TASK",
        "MITO_ATTEMPT",
    }
    assert set(env) - mito == {key for key in BASE_ENV_KEYS if key in os.environ}


async def test_cwd_is_attempt_dir_and_stdin_is_devnull(make_attempt):
    """The task starts in its attempt directory, which holds the documented layout."""
    sink = Collector()
    script = (
        "import os; print(os.getcwd()); print(os.readlink('/proc/self/fd/0'));"
        "print(sorted(os.listdir('.')))"
    )
    attempt = make_attempt([PY, "-c", script], sink=sink)
    await asyncio.wait_for(attempt.run(), 10)
    assert sink.texts() == [
        str(attempt.dirs.work),
        "/dev/null",
        "['exec', 'resources', 'result']",
    ]


async def test_phases_reported_in_order(make_attempt):
    """spawned, then exited."""
    phases: list[Phase] = []
    attempt = make_attempt(["true"], on_phase=phases.append)
    await asyncio.wait_for(attempt.run(), 10)
    assert phases == [Phase.SPAWNED, Phase.EXITED]


async def test_exit_zero_is_completed(make_attempt):
    """Exit code 0 → completed, with start and end times."""
    outcome = await asyncio.wait_for(make_attempt(["true"]).run(), 10)
    assert (outcome.reason, outcome.exit_code, outcome.signal) == (Reason.COMPLETED, 0, None)
    assert outcome.started_at <= outcome.ended_at


async def test_nonzero_exit(make_attempt):
    """Exit code 3 → nonzero_exit with the code."""
    outcome = await asyncio.wait_for(make_attempt([PY, "-c", "raise SystemExit(3)"]).run(), 10)
    assert (outcome.reason, outcome.exit_code, outcome.signal) == (Reason.NONZERO_EXIT, 3, None)
    assert outcome.message == "exited with code 3"


async def test_killed_by_signal(make_attempt):
    """A task dying of a signal → reason signal, the signal number, no exit code."""
    script = "import os, signal; os.kill(os.getpid(), signal.SIGUSR1)"
    outcome = await asyncio.wait_for(make_attempt([PY, "-c", script]).run(), 10)
    assert (outcome.reason, outcome.exit_code, outcome.signal) == (
        Reason.SIGNAL,
        None,
        signal.SIGUSR1,
    )
    assert outcome.message == "killed by SIGUSR1"


async def test_missing_command_is_exec_error(make_attempt):
    """A command that does not exist → exec_error with the OS message."""
    outcome = await asyncio.wait_for(make_attempt(["/no/such/program"]).run(), 10)
    assert outcome.reason is Reason.EXEC_ERROR
    assert "No such file or directory" in outcome.message
    assert outcome.exit_code is None


async def test_non_executable_command_is_exec_error(make_attempt, tmp_path):
    """A file without the execute bit → exec_error, permission denied."""
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    outcome = await asyncio.wait_for(make_attempt([str(script)]).run(), 10)
    assert outcome.reason is Reason.EXEC_ERROR
    assert "Permission denied" in outcome.message


async def test_cancel_kills_stubborn_grandchild(make_attempt):
    """Cancel: SIGTERM, then SIGKILL after the grace period; no group member survives."""
    sink = Collector()
    attempt = make_attempt([PY, "-c", TREE, "stubborn"], sink=sink, grace=0.5)
    run = asyncio.create_task(attempt.run())
    grandchild = int((await sink.wait_for("grandchild")).split()[1])
    began = time.monotonic()
    attempt.cancel()
    outcome = await asyncio.wait_for(run, 10)
    assert outcome.reason is Reason.CANCELLED
    assert outcome.signal == signal.SIGKILL
    assert time.monotonic() - began >= 0.5
    assert not is_running(grandchild)
    assert live_members(attempt.pid) == []


async def test_timeout_kills_whole_group(make_attempt):
    """Timeout: the main process dies of SIGTERM, the grandchild ignoring it of SIGKILL."""
    sink = Collector()
    attempt = make_attempt([PY, "-c", TREE], sink=sink, grace=0.5, timeout=1.0)
    outcome = await asyncio.wait_for(attempt.run(), 10)
    grandchild = int((await sink.wait_for("grandchild", 1)).split()[1])
    assert outcome.reason is Reason.TIMEOUT
    assert outcome.signal == signal.SIGTERM
    assert outcome.message == "timed out after 1s; killed by SIGTERM"
    assert not is_running(grandchild)
    assert live_members(attempt.pid) == []


async def test_leftovers_killed_after_normal_exit(make_attempt):
    """A background process left behind by a task that exited 0 does not survive it."""
    script = (
        "import subprocess, sys; child = subprocess.Popen([sys.executable, '-c', "
        "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'"
        "], stdout=subprocess.DEVNULL); print(child.pid, flush=True)"
    )
    sink = Collector()
    attempt = make_attempt([PY, "-c", script], sink=sink, grace=0.3)
    outcome = await asyncio.wait_for(attempt.run(), 10)
    assert outcome.reason is Reason.COMPLETED
    assert not is_running(int(sink.texts()[0]))
    assert live_members(attempt.pid) == []


async def test_cancel_before_run_spawns_nothing(make_attempt):
    """A cancel that arrives before start ends the attempt without running the command."""
    attempt = make_attempt(["true"])
    attempt.cancel()
    outcome = await asyncio.wait_for(attempt.run(), 10)
    assert outcome.reason is Reason.CANCELLED
    assert attempt.pid is None


async def test_cleanup_removes_attempt_dir(make_attempt):
    """Outputs stay until cleanup(), which removes the whole attempt directory."""
    attempt = make_attempt(["sh", "-c", 'echo x > "$MITO_RESULT_DIR/out"'], terminal_output=True)
    await asyncio.wait_for(attempt.run(), 10)
    assert (attempt.dirs.result / "out").read_text() == "x\n"
    attempt.cleanup()
    assert not attempt.dirs.root.exists()


@pytest.mark.parametrize("terminal_output", [False, True])
async def test_cleanup_removes_an_attempt_that_left_nothing(make_attempt, terminal_output):
    """The common case, a task that wrote nothing, leaves no trace either."""
    attempt = make_attempt(["true"], terminal_output=terminal_output)
    await asyncio.wait_for(attempt.run(), 10)
    attempt.cleanup()
    assert not attempt.dirs.root.exists()
    assert list(attempt.dirs.root.parent.iterdir()) == []


async def test_cleanup_never_follows_a_link_the_task_left(make_attempt, tmp_path):
    """A task that swaps its folders for links to elsewhere gets its tree removed, and
    the places the links point at stay as they were."""
    outside = tmp_path / "outside"
    (outside / "result").mkdir(parents=True)
    (outside / "keep").write_text("mine")
    swap = 'cd .. && rm -r work && ln -s "$OUTSIDE" work'
    attempt = make_attempt(["sh", "-c", swap], env={"OUTSIDE": str(outside)})
    outcome = await asyncio.wait_for(attempt.run(), 10)
    assert outcome.reason is Reason.COMPLETED
    attempt.cleanup()
    assert not attempt.dirs.root.exists()
    assert (outside / "result").is_dir()
    assert (outside / "keep").read_text() == "mine"


async def test_prepare_starts_afresh(make_attempt):
    """A directory left by a crashed earlier run of the same attempt is replaced."""
    attempt = make_attempt(["true"])
    attempt.prepare()
    (attempt.dirs.result / "stale").write_text("old")
    attempt.prepare()
    assert list(attempt.dirs.result.iterdir()) == []


@pytest.mark.parametrize("env", [{"BAD=NAME": "x"}, {"NUL": "a\0b"}])
async def test_unusable_spec_env_is_exec_error(make_attempt, env):
    """A variable the OS cannot pass → exec_error, not a crash of the worker."""
    outcome = await asyncio.wait_for(make_attempt(["true"], env=env).run(), 10)
    assert outcome.reason is Reason.EXEC_ERROR
