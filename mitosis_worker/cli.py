"""``mitosis-worker``: run a worker daemon, or manage several on this node.

    mitosis-worker [-c URL] [-u USER] [-p PASSWORD] [-g GROUPS] [-t TAGS] [-l LABELS]
                   [--slots N] [--heartbeat-interval D] [--lifetime D] [--work-dir DIR] …
    mitosis-worker manager spawn N [worker options] | status | stop [--force]

Exit status: 0 after a clean stop, 2 for bad options, 3 when the credentials are refused,
6 when the coordinator cannot be reached within ``connect_timeout`` at start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

from mitosis_sdk import errors
from mitosis_sdk.auth import CredentialCache
from mitosis_sdk.client import DEFAULT_URL, AsyncClient
from mitosis_sdk.config import ConfigError, add_option_flags, flag_values, load_settings
from mitosis_sdk.units import format_duration, format_size
from mitosis_worker import manager
from mitosis_worker.backoff import Backoff
from mitosis_worker.config import WorkerSettings
from mitosis_worker.daemon import WorkerDaemon

log = logging.getLogger("mitosis_worker")

SHORT_FLAGS = {
    "coordinator": "-c",
    "user": "-u",
    "password": "-p",
    "groups": "-g",
    "tags": "-t",
    "labels": "-l",
}


def worker_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mitosis-worker",
        description="Run a Mitosis worker: take tasks of the granted groups and run them here."
        " `mitosis-worker manager --help` manages several workers on this node.",
    )
    parser.add_argument("--config", metavar="FILE", help="config file ([worker] section)")
    add_option_flags(parser, WorkerSettings, short=SHORT_FLAGS)
    return parser


def manager_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mitosis-worker manager", description="Spawn, list and stop workers on this node."
    )
    parser.add_argument(
        "--state-dir", type=Path, default=None, help="pid files (default: user state dir)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    spawn = commands.add_parser("spawn", help="start N detached workers")
    spawn.add_argument("count", type=int, metavar="N")
    spawn.add_argument("worker_args", nargs=argparse.REMAINDER, help="mitosis-worker options")
    commands.add_parser("status", help="pid, uptime, CPU, memory, worker UUID, running tasks")
    stop = commands.add_parser("stop", help="stop the workers (SIGTERM; they requeue tasks)")
    stop.add_argument("--force", action="store_true", help="kill workers and their tasks now")
    stop.add_argument("--timeout", type=float, default=60.0, help="seconds before SIGKILL")
    return parser


def run_manager(argv: list[str]) -> int:
    args = manager_parser().parse_args(argv)
    state_dir = args.state_dir or manager.default_state_dir()
    if args.command == "spawn":
        if args.count < 1:
            print("mitosis-worker manager: N must be at least 1", file=sys.stderr)
            return 2
        command = [sys.executable, "-m", "mitosis_worker.cli", *args.worker_args]
        started = manager.spawn(args.count, command, state_dir=state_dir)
        for worker in started:
            print(f"{worker.name}\tpid {worker.record.pid}\tlog {worker.record.log}")
        return 0
    if args.command == "status":
        rows = manager.status(state_dir)
        print("NAME\tPID\tALIVE\tUPTIME\tCPU\tRSS\tWORKER\tSTATE\tTASKS")
        for w in rows:
            print(
                f"{w.name}\t{w.pid}\t{'yes' if w.alive else 'no'}\t"
                f"{format_duration(w.uptime) if w.uptime is not None else '-'}\t"
                f"{w.cpu_percent if w.cpu_percent is not None else '-'}\t"
                f"{format_size(w.rss) if w.rss else '-'}\t{w.worker_uuid or '-'}\t"
                f"{w.state or '-'}\t{','.join(w.tasks) or '-'}"
            )
        return 0
    for result in manager.stop(state_dir, force=args.force, timeout=args.timeout):
        print(f"{result.name}\tpid {result.pid}\t{result.result}")
    return 0


async def authenticate(
    settings: WorkerSettings, client: AsyncClient, cache: CredentialCache
) -> None:
    """A cached token for the user, or a login with the password; retried at start-up."""
    last = cache.last(client.base_url)
    username = settings.user or (last[1] if last else None)
    if not username:
        raise errors.Unauthorized("no user: pass -u USER (and -p PASSWORD the first time)")
    cached = cache.get(client.base_url, username)
    backoff = Backoff(initial=0.5, maximum=10.0)
    deadline = time.monotonic() + settings.connect_timeout
    while True:
        try:
            if cached is not None:
                client.token = cached.token
                await client.whoami()
                return
            if not settings.password:
                raise errors.Unauthorized(
                    f"no cached login for {username} at {client.base_url}: pass -p PASSWORD"
                )
            reply = await client.login(username, settings.password)
            cache.put(client.base_url, username, reply.token, reply.expires_at)
            return
        except errors.Unauthorized:
            if cached is None:
                raise
            cache.forget(client.base_url, username)
            cached = None
        except errors.ConnectionFailed as exc:
            if time.monotonic() >= deadline:
                raise
            delay = backoff.delay()
            log.warning("coordinator.unreachable retry_in=%.1fs: %s", delay, exc.message)
            await asyncio.sleep(delay)


def prepare_work_dir(work_dir: str) -> None:
    """Make sure attempt directories can be created, before the worker takes any task.

    A worker that cannot write there would register and then fail every task it takes;
    refusing to start says what is wrong once, where the operator looks.
    """
    path = Path(work_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".probe-", dir=path):
            pass
    except OSError as exc:
        raise ValueError(f"option 'work_dir': cannot use {work_dir}: {exc.strerror}") from None


async def serve(settings: WorkerSettings) -> int:
    cache = CredentialCache()
    last = cache.last(settings.coordinator)
    url = settings.coordinator or (last[0] if last else DEFAULT_URL)
    async with AsyncClient(url, timeout=settings.timeout) as client:
        try:
            await authenticate(settings, client, cache)
            daemon = WorkerDaemon(settings, client)
            daemon.install_signal_handlers()
            return await daemon.run()
        except errors.ConnectionFailed as exc:
            print(f"mitosis-worker: {exc.message}", file=sys.stderr)
            return 6
        except (errors.Unauthorized, errors.Forbidden) as exc:
            print(f"mitosis-worker: {exc.message}", file=sys.stderr)
            return 3
        except errors.ApiError as exc:
            print(f"mitosis-worker: the coordinator refused: {exc.message}", file=sys.stderr)
            return 2 if isinstance(exc, errors.BadRequest) else 1


def configure_logging(settings: WorkerSettings) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if settings.file_log:
        from logging.handlers import RotatingFileHandler

        path = Path(settings.log_path or Path(settings.work_dir) / "worker.log")
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(RotatingFileHandler(path, maxBytes=50 * 2**20, backupCount=5))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    # One line per HTTP request (several per task) is noise, and costs a busy worker time.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _runner() -> asyncio.Runner:
    """The event loop the daemon runs on: uvloop where it is installed (as uvicorn picks it
    for the coordinator); a busy worker spends a good part of its time in the loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["manager"]:
        return run_manager(argv[1:])
    args = worker_parser().parse_args(argv)
    try:
        settings = load_settings(
            WorkerSettings,
            "worker",
            config_file=args.config,
            flags=flag_values(args, WorkerSettings),
        )
        settings.validate()
        prepare_work_dir(settings.work_dir)
    except (ConfigError, ValueError) as exc:
        print(f"mitosis-worker: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    try:
        with _runner() as runner:
            return runner.run(serve(settings))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
