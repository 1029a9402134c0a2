"""One task attempt on this node: its directory, environment, process group and outcome.

This is the only code that starts task processes, so the isolation rules of FEATURES X1/X2
live here and nowhere else:

* A fresh directory per attempt (its layout and upkeep: ``trees``). The task's working
  directory holds ``result/``, ``exec/``, ``resources/`` and the ``new-task.json`` path;
  ``std-log/`` (``--terminal``) sits beside it, out of the task's way.
  :meth:`Attempt.cleanup` removes it all, separately from :meth:`Attempt.run`, so the
  uploader can pack the outputs first.
* A clean environment: the basics in :data:`BASE_ENV_KEYS` copied from the worker, then the
  spec's variables, then the ``MITO_*`` variables. Nothing else of the worker leaks in
  (its credentials least of all).
* No shell, stdin from /dev/null, and a session of its own, so timeout, cancel and leftovers
  are handled per process group: SIGTERM (and SIGCONT, so a stopped group sees it), a grace
  period, then SIGKILL. Members still running after the main process exits get the same,
  so no grandchild outlives its attempt. (A process that calls setsid() itself leaves the
  group; only cgroups could follow it.)

It knows nothing of the coordinator: the daemon passes a phase callback and a log sink, and
turns the returned :class:`Outcome` into its report.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil

from mitosis_sdk.units import format_duration
from mitosis_worker.logs import LogCapture, LogLimits, LogSink
from mitosis_worker.trees import AttemptDirs, Trees, make_tree, remove_tree

__all__ = [
    "BASE_ENV_KEYS",
    "Attempt",
    "AttemptSpec",
    "Outcome",
    "Phase",
    "Reason",
    "base_environment",
]

logger = logging.getLogger(__name__)

BASE_ENV_KEYS = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
    "TMPDIR",
    "TZ",
)
_POLL = 0.05  # seconds between checks whether a process group is empty
_KILL_WAIT = 5.0  # how long SIGKILL may take before we give up waiting and say so


def base_environment(source: Mapping[str, str]) -> dict[str, str]:
    """The part of the worker's own environment every task gets."""
    return {key: source[key] for key in BASE_ENV_KEYS if key in source}


class Reason(enum.StrEnum):
    COMPLETED = "completed"
    NONZERO_EXIT = "nonzero_exit"
    SIGNAL = "signal"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    EXEC_ERROR = "exec_error"


class Phase(enum.StrEnum):
    """The phases the executor reports; the daemon reports the ones around them."""

    SPAWNED = "spawned"
    EXITED = "exited"


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptSpec:
    task_uuid: str
    attempt: int
    command: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = 600.0  # seconds from spawn; None: no limit
    upstream_uuid: str | None = None
    array_index: int | None = None
    terminal_output: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    reason: Reason
    message: str  # for people: "exited with code 3", "timed out after 10m; killed by SIGTERM"
    exit_code: int | None
    signal: int | None
    started_at: datetime
    ended_at: datetime  # when the main process exited


def _now() -> datetime:
    return datetime.now(UTC)


class Attempt:
    """Runs one attempt: ``prepare()`` (optional, for resources), ``run()``, ``cleanup()``.

    ``cancel()`` may be called from any coroutine at any time, also before ``run()``.
    ``on_phase`` is called synchronously and must not block (queue the report).
    """

    def __init__(
        self,
        spec: AttemptSpec,
        base_dir: Path,
        *,
        log_sink: LogSink | None = None,
        on_phase: Callable[[Phase], None] | None = None,
        grace: float = 10.0,
        log_limits: LogLimits | None = None,
        base_env: Mapping[str, str] | None = None,
        trees: Trees | None = None,
    ) -> None:
        self.spec = spec
        self.dirs = AttemptDirs.under(Path(base_dir), spec.task_uuid, spec.attempt)
        self.pid: int | None = None  # of the main process, also its process group id
        self._log_sink = log_sink
        self._on_phase = on_phase
        self._grace = grace
        self._log_limits = log_limits
        self._base_env = base_environment(os.environ if base_env is None else base_env)
        self._trees = trees
        self._cancel = asyncio.Event()
        self._prepared = False

    def prepare(self) -> AttemptDirs:
        """Put a fresh tree in place (a crashed run's leftovers there go first)."""
        dirs = self.dirs
        if self._trees is None:
            remove_tree(dirs.root)
            os.makedirs(dirs.root.parent, mode=0o700, exist_ok=True)
            make_tree(dirs)
        else:
            self._trees.discard(dirs.root)
            if not self._trees.place(dirs.root):
                make_tree(dirs)
        if self.spec.terminal_output:
            os.mkdir(dirs.std_log, mode=0o700)
        self._prepared = True
        return dirs

    def environment(self) -> dict[str, str]:
        """Base, then the spec's variables, then ``MITO_*`` (which the spec cannot override)."""
        spec, dirs = self.spec, self.dirs
        env = {**self._base_env, **spec.env}
        env["MITO_TASK_UUID"] = spec.task_uuid
        env["MITO_RESULT_DIR"] = str(dirs.result)
        env["MITO_EXEC_DIR"] = str(dirs.exec)
        env["MITO_RESOURCE_DIR"] = str(dirs.resources)
        env["MITO_NEW_TASK"] = str(dirs.new_task)
        if spec.upstream_uuid is not None:
            env["MITO_UPSTREAM_TASK_UUID"] = spec.upstream_uuid
        if spec.array_index is not None:
            env["MITO_ARRAY_INDEX"] = str(spec.array_index)
        env["MITO_ATTEMPT"] = str(spec.attempt)
        return env

    def cancel(self) -> None:
        self._cancel.set()

    async def run(self) -> Outcome:
        if not self._prepared:
            self.prepare()
        started = _now()
        if self._cancel.is_set():
            return Outcome(Reason.CANCELLED, "cancelled before start", None, None, started, started)
        command = list(self.spec.command)
        if not command:
            return Outcome(Reason.EXEC_ERROR, "the command is empty", None, None, started, _now())
        capture = LogCapture(
            self._log_sink,
            self._log_limits,
            self.dirs.std_log if self.spec.terminal_output else None,
        )
        stdout, stderr = capture.open()
        try:
            # Popen itself, not asyncio's wrapper: the same vfork and exec without a
            # transport, protocols and a child watcher around them (half the spawn's CPU),
            # and no await between the claim and the spawn. The exit is watched below.
            process = subprocess.Popen(  # noqa: ASYNC220  vfork and exec: well under a millisecond
                command,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                cwd=self.dirs.work,
                env=self.environment(),
                start_new_session=True,
            )
        except BaseException as exc:
            await capture.abort()
            if not isinstance(exc, OSError | ValueError):  # ValueError: bad name in spec.env
                raise
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            message = f"cannot execute {command[0]!r}: {detail}"
            return Outcome(Reason.EXEC_ERROR, message, None, None, started, _now())
        capture.release_child_ends()
        self.pid = process.pid
        self._report(Phase.SPAWNED)
        # After the spawn, not before: a log line costs more than the spawn's system calls.
        logger.info(
            "attempt.started task=%s attempt=%s pid=%s",
            self.spec.task_uuid,
            self.spec.attempt,
            process.pid,
        )
        try:
            stopped_by, ended = await self._wait(process)
        except BaseException:
            _signal_group(process.pid, signal.SIGKILL)
            await capture.abort()
            raise
        self._report(Phase.EXITED)
        await capture.finish()
        return _outcome(process.returncode, stopped_by, self.spec.timeout, started, ended)

    def cleanup(self) -> None:
        """Remove the attempt's tree (after the uploader packed the outputs): handed to
        the daemon's trees (their keeper removes it), or removed here without them."""
        if self._trees is None:
            remove_tree(self.dirs.root)
        else:
            self._trees.discard(self.dirs.root)

    async def _wait(self, process: subprocess.Popen) -> tuple[Reason | None, datetime]:
        """Wait for exit, timeout or cancel; leave no member of the group running."""
        waiter = asyncio.ensure_future(_exit_time(process))
        cancelled = asyncio.ensure_future(self._cancel.wait())
        try:
            done, _ = await asyncio.wait(
                {waiter, cancelled},
                timeout=self.spec.timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            stopped_by = None
            if waiter not in done:
                stopped_by = Reason.CANCELLED if cancelled in done else Reason.TIMEOUT
            await self._stop_group(process.pid)
            ended = await waiter
        finally:
            waiter.cancel()
            cancelled.cancel()
        return stopped_by, ended

    async def _stop_group(self, pgid: int) -> None:
        """SIGTERM the group, SIGKILL whatever is left after the grace period."""
        if not _group_alive(pgid):
            return
        _signal_group(pgid, signal.SIGTERM)
        _signal_group(pgid, signal.SIGCONT)
        if await _group_gone(pgid, self._grace):
            return
        _signal_group(pgid, signal.SIGKILL)
        if not await _group_gone(pgid, _KILL_WAIT):
            logger.warning("executor.group_survived_kill pgid=%d", pgid)

    def _report(self, phase: Phase) -> None:
        if self._on_phase is not None:
            self._on_phase(phase)


async def _exit_time(process: subprocess.Popen) -> datetime:
    """When the main process exited; it is reaped then. The loop watches its pidfd like a
    socket; without pidfds (Linux before 5.3) a thread waits."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):
        await asyncio.to_thread(process.wait)
        return _now()
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[datetime] = loop.create_future()

    def check() -> None:
        if not exited.done() and process.poll() is not None:
            exited.set_result(_now())

    loop.add_reader(pidfd, check)
    try:
        check()  # it may be gone already
        return await exited
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


def _outcome(
    returncode: int | None,
    stopped_by: Reason | None,
    timeout: float | None,
    started: datetime,
    ended: datetime,
) -> Outcome:
    assert returncode is not None  # the process has been waited for
    if returncode < 0:
        sig = -returncode
        how = f"killed by {signal.Signals(sig).name}"
        reason = Reason.SIGNAL
    else:
        sig = None
        how = f"exited with code {returncode}"
        reason = Reason.COMPLETED if returncode == 0 else Reason.NONZERO_EXIT
    if stopped_by is Reason.TIMEOUT:
        how = f"timed out after {format_duration(timeout or 0)}; {how}"
    elif stopped_by is Reason.CANCELLED:
        how = f"cancelled; {how}"
    code = returncode if returncode >= 0 else None
    return Outcome(stopped_by or reason, how, code, sig, started, ended)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    # The group id stays reserved while any member (even a zombie) exists, so this can only
    # reach the task's own processes or nothing.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """True while a process of the group runs (zombies do not count: nothing to kill)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == pgid and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return True
        except (OSError, psutil.Error):
            continue
    return False


async def _group_gone(pgid: int, within: float) -> bool:
    """Wait until the group is empty; False if it still is not after ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            # Nothing signals "process group empty" (a pidfd watches one pid), so poll.
            while _group_alive(pgid):  # noqa: ASYNC110
                await asyncio.sleep(_POLL)
    except TimeoutError:
        return False
    return True
