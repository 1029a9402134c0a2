"""``mitosis-worker manager``: many worker daemons on one node, tracked by their pid files.

``spawn`` starts detached workers (a session of their own, stdin /dev/null, output appended
to a log) and writes one pid file per worker into a state directory; ``status`` and
``stop`` look at nothing else. A process is taken for a worker only if it has the recorded
pid *and* the recorded start time (psutil's ``create_time``), so a recycled pid is never
signalled, and no process is ever found by its name. A pid file whose process is gone is
stale: ``status`` shows it as dead and ``stop`` removes it.

Each worker keeps a small status file next to its pid file (:func:`write_status`; the path
comes in ``$MITO_STATUS_FILE``). It tells ``status`` the worker's UUID and running tasks,
and tells ``stop`` which task process groups to kill when the worker itself has to be
killed: task groups live in sessions of their own and would otherwise outlive it.

State directory, one set of files per worker::

    worker-1.pid          PidRecord (JSON)
    worker-1.status.json  WorkerStatus (JSON), written by the worker
    worker-1.log          the worker's stdout and stderr
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
import platformdirs
import psutil

__all__ = [
    "STATUS_FILE_ENV",
    "ManagedWorker",
    "PidRecord",
    "StopResult",
    "TaskProcess",
    "WorkerInfo",
    "WorkerStatus",
    "default_state_dir",
    "spawn",
    "status",
    "stop",
    "write_status",
]

STATUS_FILE_ENV = "MITO_STATUS_FILE"
_SAME_START = 0.01  # seconds of slack when comparing create_time values
_POLL = 0.05


class PidRecord(msgspec.Struct, kw_only=True):
    pid: int
    create_time: float  # psutil create_time, epoch seconds: guards against pid reuse
    argv: list[str]
    log: str


class TaskProcess(msgspec.Struct, kw_only=True):
    uuid: str
    attempt: int
    pgid: int  # the task's main pid, which is also its process group id
    create_time: float  # of that main process


class WorkerStatus(msgspec.Struct, kw_only=True):
    pid: int  # of the worker; a file left by an earlier process of the same name is ignored
    worker_uuid: str | None = None
    state: str = "starting"  # free text from the daemon: idle, running, draining, ...
    tasks: list[TaskProcess] = []
    updated_at: float = 0.0  # epoch seconds
    keeper_pid: int | None = None  # its tree keeper, whose CPU and memory count as its own


@dataclass(frozen=True, slots=True)
class ManagedWorker:
    name: str
    pid_file: Path
    record: PidRecord


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    name: str
    pid: int | None  # None: the pid file is unreadable
    alive: bool
    uptime: float | None  # seconds
    cpu_percent: float | None
    rss: int | None  # bytes
    worker_uuid: str | None
    state: str | None
    tasks: list[str]  # task UUIDs
    log: str | None


@dataclass(frozen=True, slots=True)
class StopResult:
    name: str
    pid: int | None
    result: str  # "stopped" (exited after SIGTERM), "killed" (SIGKILL), "stale" (was gone)


def default_state_dir() -> Path:
    return platformdirs.user_state_path("mitosis") / "workers"


def write_status(
    path: Path,
    *,
    worker_uuid: str | None,
    state: str,
    tasks: Iterable[tuple[str, int, int]] = (),
    keeper_pid: int | None = None,
) -> None:
    """Replace the worker's status file atomically; ``tasks`` are (task uuid, attempt, pid).

    The daemon calls this on start, on every task start and end, and on state changes.
    """
    entries = []
    for uuid, attempt, pid in tasks:
        with contextlib.suppress(psutil.Error):
            started = psutil.Process(pid).create_time()
            entries.append(TaskProcess(uuid=uuid, attempt=attempt, pgid=pid, create_time=started))
    current = WorkerStatus(
        pid=os.getpid(),
        worker_uuid=worker_uuid,
        state=state,
        tasks=entries,
        updated_at=time.time(),
        keeper_pid=keeper_pid,
    )
    _write_atomic(path, msgspec.json.encode(current))


def spawn(
    count: int,
    argv: Sequence[str],
    *,
    state_dir: Path,
    env: Mapping[str, str] | None = None,
) -> list[ManagedWorker]:
    """Start ``count`` detached workers running ``argv``; raises OSError if it cannot run."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    started = []
    for _ in range(count):
        name, pid_file = _reserve_name(state_dir)
        log = state_dir / f"{name}.log"
        status_file = _status_file(pid_file)
        status_file.unlink(missing_ok=True)
        child_env = {**(os.environ if env is None else env), STATUS_FILE_ENV: str(status_file)}
        try:
            pid = _spawn_detached(argv, child_env, log)
        except OSError:
            pid_file.unlink(missing_ok=True)
            raise
        record = PidRecord(
            pid=pid, create_time=psutil.Process(pid).create_time(), argv=list(argv), log=str(log)
        )
        _write_atomic(pid_file, msgspec.json.encode(record))
        started.append(ManagedWorker(name, pid_file, record))
    return started


def status(state_dir: Path, *, sample: float = 0.2) -> list[WorkerInfo]:
    """Every worker with a pid file; CPU% is measured over ``sample`` seconds, and CPU and
    RSS are the daemon's and its tree keeper's together."""
    found = []
    for name, path, record in _pid_files(state_dir):
        proc = _process(record)
        worker_status = _read_status(path, record.pid) if record is not None else None
        keeper = _keeper(worker_status, proc) if proc is not None else None
        found.append((name, record, worker_status, proc, keeper))
    live = [p for *_, proc, keeper in found for p in (proc, keeper) if p is not None]
    for proc in live:
        with contextlib.suppress(psutil.Error):
            proc.cpu_percent(None)
    if live and sample > 0:
        time.sleep(sample)
    return [_info(*entry) for entry in found]


def _keeper(worker_status: WorkerStatus | None, worker: psutil.Process) -> psutil.Process | None:
    """The tree keeper the worker's status names, if it is that worker's child."""
    if worker_status is None or worker_status.keeper_pid is None:
        return None
    try:
        keeper = psutil.Process(worker_status.keeper_pid)
        return keeper if keeper.ppid() == worker.pid else None
    except psutil.Error:
        return None


def stop(state_dir: Path, *, force: bool = False, timeout: float = 60.0) -> list[StopResult]:
    """Stop every worker and remove its files (stale pid files too).

    SIGTERM lets a worker drain (FEATURES W5); one still running after ``timeout`` seconds,
    or every one with ``force``, gets SIGKILL, and so do its tasks' process groups.
    """
    results: list[StopResult] = []
    running: list[tuple[Path, PidRecord, psutil.Process]] = []
    for name, path, record in _pid_files(state_dir):
        proc = _process(record)
        if record is None or proc is None:
            results.append(StopResult(name, record.pid if record else None, "stale"))
            _remove_files(path)
            continue
        running.append((path, record, proc))
        if not force:
            _send(proc, signal.SIGTERM)
    if not force:
        _wait_gone([proc for _, _, proc in running], timeout)
    for path, record, proc in running:
        result = "stopped"
        if _alive(proc):
            result = "killed"
            worker_status = _read_status(path, record.pid)
            _send(proc, signal.SIGKILL)
            _wait_gone([proc], 5.0)
            for task in worker_status.tasks if worker_status else ():
                _kill_task_group(task)
        results.append(StopResult(path.stem, record.pid, result))
        _remove_files(path)
    return sorted(results, key=lambda r: _name_key(r.name))


def _reserve_name(state_dir: Path) -> tuple[str, Path]:
    """The lowest free ``worker-N``, claimed by creating its pid file exclusively."""
    number = 1
    while True:
        name = f"worker-{number}"
        path = state_dir / f"{name}.pid"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            number += 1
            continue
        return name, path


def _spawn_detached(argv: Sequence[str], env: Mapping[str, str], log: Path) -> int:
    """posix_spawn: no Popen object that would warn when dropped while the worker runs."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        return os.posix_spawnp(
            argv[0],
            list(argv),
            dict(env),
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, fd, 1),
                (os.POSIX_SPAWN_DUP2, fd, 2),
            ],
            setsid=True,
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),  # Python ignores these; undo that
        )
    finally:
        os.close(fd)


def _status_file(pid_file: Path) -> Path:
    return pid_file.with_suffix(".status.json")


def _name_key(name: str) -> tuple[int, str]:
    number = name.removeprefix("worker-")
    return (int(number), "") if number.isdigit() else (0, name)


def _pid_files(state_dir: Path) -> list[tuple[str, Path, PidRecord | None]]:
    """(name, path, record) per pid file, in worker order; None for an unreadable file."""
    if not state_dir.is_dir():
        return []
    found = []
    for path in state_dir.glob("worker-*.pid"):
        try:
            record = msgspec.json.decode(path.read_bytes(), type=PidRecord)
        except (OSError, msgspec.DecodeError):
            record = None
        found.append((path.stem, path, record))
    return sorted(found, key=lambda item: _name_key(item[0]))


def _process(record: PidRecord | None) -> psutil.Process | None:
    """The recorded worker if that very process still runs, else None."""
    if record is None:
        return None
    try:
        proc = psutil.Process(record.pid)
        if abs(proc.create_time() - record.create_time) > _SAME_START:
            return None  # the pid now belongs to someone else
    except psutil.Error:
        return None
    return proc if _alive(proc) else None


def _alive(proc: psutil.Process) -> bool:
    try:
        if proc.status() != psutil.STATUS_ZOMBIE:
            return proc.is_running()
    except psutil.Error:
        return False
    # A zombie is dead; reap it if it is our child (the manager ran in this process).
    with contextlib.suppress(ChildProcessError):
        os.waitpid(proc.pid, os.WNOHANG)
    return False


def _send(proc: psutil.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(psutil.Error):
        proc.send_signal(sig)  # psutil re-checks create_time before signalling


def _wait_gone(procs: list[psutil.Process], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(_alive(proc) for proc in procs) and time.monotonic() < deadline:
        time.sleep(_POLL)


def _kill_task_group(task: TaskProcess) -> None:
    """SIGKILL a task's process group unless its id now belongs to another process."""
    try:
        if abs(psutil.Process(task.pgid).create_time() - task.create_time) > _SAME_START:
            return
    except psutil.NoSuchProcess:
        pass  # leader gone: the id stays reserved while any member lives, so it is still theirs
    except psutil.Error:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(task.pgid, signal.SIGKILL)


def _read_status(pid_file: Path, pid: int) -> WorkerStatus | None:
    try:
        current = msgspec.json.decode(_status_file(pid_file).read_bytes(), type=WorkerStatus)
    except (OSError, msgspec.DecodeError):
        return None
    return current if current.pid == pid else None


def _info(
    name: str,
    record: PidRecord | None,
    worker_status: WorkerStatus | None,
    proc: psutil.Process | None,
    keeper: psutil.Process | None,
) -> WorkerInfo:
    uptime = cpu = rss = None
    if proc is not None and record is not None:
        with contextlib.suppress(psutil.Error):
            with proc.oneshot():
                cpu = proc.cpu_percent(None)
                rss = proc.memory_info().rss
            uptime = max(0.0, time.time() - record.create_time)
        if keeper is not None and cpu is not None and rss is not None:
            with contextlib.suppress(psutil.Error), keeper.oneshot():
                cpu += keeper.cpu_percent(None)
                rss += keeper.memory_info().rss
    return WorkerInfo(
        name=name,
        pid=record.pid if record is not None else None,
        alive=proc is not None,
        uptime=uptime,
        cpu_percent=cpu,
        rss=rss,
        worker_uuid=worker_status.worker_uuid if worker_status else None,
        state=worker_status.state if worker_status else None,
        tasks=[task.uuid for task in worker_status.tasks] if worker_status else [],
        log=record.log if record is not None else None,
    )


def _remove_files(pid_file: Path) -> None:
    _status_file(pid_file).unlink(missing_ok=True)
    pid_file.unlink(missing_ok=True)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
