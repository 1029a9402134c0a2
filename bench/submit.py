"""Submit benchmark (issue 3, the submit rows): real ``mitosis-server`` processes over real HTTP
on PostgreSQL and SQLite, with the coordinator's CPU measured from outside.

* single submissions from 4 concurrent clients, and batches of 1,000 from one client: tasks
  per second (wall) and the coordinator's CPU per task (psutil, user + system), with the load
  average of the machine while it ran;
* the split of one single submit's coordinator CPU: *submit-specific* is the service alone
  (``single_submit.submit_one`` with its commit, run in this process against the same
  database), *generic* is the rest of the request (HTTP, token check, Litestar, the session).

``bench.dispatch`` reports the first two figures in its table; ``python -m bench.submit``
runs only these, empty and on top of ``--finished`` finished tasks (``--quick``: a smoke run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import psutil

from bench.loadgen import hammer, prepared_request
from bench.servers import coordinators, fresh_database
from mitosis_sdk.client import AsyncClient
from mitosis_sdk.schemas import TaskFilter, TaskSpec, TaskState
from mitosis_server.config import CoordinatorSettings
from mitosis_server.db.engine import create_engine, session_factory
from mitosis_server.services import single_submit
from mitosis_server.services.auth import Principal
from mitosis_server.services.wakeups import Wakeups

ADMIN = ("mitosis_admin", "mitosis_admin")
SPEC = TaskSpec(command=["true"])


def server_process(url: str) -> psutil.Process:
    """The process listening on ``url``'s port (the coordinator a bench started)."""
    port = int(url.rsplit(":", 1)[1])
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.AccessDenied, psutil.NoSuchProcess):
            for connection in process.net_connections(kind="tcp"):
                if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port:
                    return process
    raise LookupError(f"no process listens on {url}")


class CpuMeter:
    """CPU seconds the coordinators used (user + system) over a stretch of wall time."""

    def __init__(self, urls: list[str]) -> None:
        self.processes = [server_process(url) for url in urls]

    def _cpu(self) -> float:
        return sum(sum(p.cpu_times()[:2]) for p in self.processes)

    @contextlib.contextmanager
    def measure(self):
        measured: dict = {}
        cpu, wall, load = self._cpu(), time.perf_counter(), os.getloadavg()[0]
        yield measured
        measured.update(
            cpu=self._cpu() - cpu,
            wall=time.perf_counter() - wall,
            load=max(load, os.getloadavg()[0]),
        )


async def _client(url: str) -> AsyncClient:
    client = AsyncClient(url, timeout=120)
    await client.login(*ADMIN)
    return client


async def submit_throughput(
    urls: list[str], singles: int, batches: int, lean_seconds: float = 10
) -> dict:
    """Single submissions from 4 SDK clients, ``batches`` batches of 1,000, then single
    submissions from 4 lean connections (``bench.loadgen``) for ``lean_seconds`` (last: the
    thousands of rows they add would otherwise be vacuumed under the batches)."""
    meter = CpuMeter(urls)
    clients = [await _client(urls[i % len(urls)]) for i in range(4)]
    # A live worker for the admin's group, as in production: the no-worker warning stays off.
    await clients[0].register_worker(slots=1)

    async def submit_many(client: AsyncClient, count: int) -> None:
        for _ in range(count):
            await client.submit_task(SPEC)

    await asyncio.gather(*(submit_many(c, 10) for c in clients))  # warm the statement caches
    with meter.measure() as single:
        await asyncio.gather(*(submit_many(c, singles // 4) for c in clients))
    with meter.measure() as batch:
        for _ in range(batches):
            await clients[0].submit_tasks([SPEC] * 1000)
    request = prepared_request("POST", "/api/tasks", clients[0].token, msgspec.json.encode(SPEC))
    with meter.measure() as lean:
        lean_count, _ = await hammer(urls, request, connections=4, seconds=lean_seconds, expect=201)
    await clients[0].cancel_tasks(task_filter=TaskFilter(states=[TaskState.READY]))
    for client in clients:
        await client.aclose()
    n_single, n_batch = singles // 4 * 4, batches * 1000
    return {
        "submit_single_per_s": n_single / single["wall"],
        "submit_single_cpu_ms": single["cpu"] / n_single * 1000,
        "submit_single_load": single["load"],
        "submit_lean_per_s": lean_count / lean["wall"],
        "submit_lean_cpu_ms": lean["cpu"] / lean_count * 1000,
        "submit_lean_load": lean["load"],
        "submit_batch_per_s": n_batch / batch["wall"],
        "submit_batch_cpu_ms": batch["cpu"] / n_batch * 1000,
        "submit_batch_cpu_us": batch["cpu"] / n_batch * 1e6,
        "submit_batch_load": batch["load"],
    }


async def service_cpu(db: str, n: int) -> float:
    """CPU milliseconds of one single submit's service call and commit, in this process
    (no HTTP, no token check): the submit-specific part of a request."""
    engine = create_engine(db)
    sessions = session_factory(engine)
    settings = CoordinatorSettings()
    principal = Principal(
        user_id=1, username=ADMIN[0], is_admin=True, session_id="bench", token_expires_at=None
    )
    wakeups = Wakeups()

    async def once() -> None:
        await single_submit.submit_one(
            sessions, principal, SPEC, max_attempts=settings.max_attempts, wakeups=wakeups
        )

    for _ in range(20):
        await once()
    started = time.process_time()
    for _ in range(n):
        await once()
    used = time.process_time() - started
    await engine.dispose()
    return used / n * 1000


async def run_backend(backend: str, args) -> dict:
    from bench.dispatch import add_finished_tasks  # here: bench.dispatch imports this module

    with tempfile.TemporaryDirectory(prefix="mito-bench-") as tmp:
        workdir = Path(tmp)
        async with fresh_database(backend, workdir) as db:
            extra = ("--password-hash-memory", "1MiB")
            async with coordinators(db, workdir, args.servers, *extra) as urls:
                result = {"backend": backend}
                for part in ("empty", "loaded"):
                    if part == "loaded":
                        if not args.finished:
                            break
                        print(
                            f"[{backend}] adding {args.finished:,} finished tasks …",
                            file=sys.stderr,
                        )
                        await add_finished_tasks(db, args.finished)
                    figures = await submit_throughput(
                        urls, args.singles, args.batches, args.lean_seconds
                    )
                    if args.service:
                        figures["service_cpu_ms"] = await service_cpu(db, args.service)
                        figures["generic_cpu_ms"] = (
                            figures["submit_single_cpu_ms"] - figures["service_cpu_ms"]
                        )
                    print(f"[{backend}] {part}: {figures}", file=sys.stderr)
                    result[part] = figures
    return result


ROWS = [
    ("submit, single requests, 4 clients", "submit_single_per_s", "{:,.0f}/s"),
    ("coordinator CPU per single submit", "submit_single_cpu_ms", "{:.2f} ms"),
    ("… of which the submit service and commit", "service_cpu_ms", "{:.2f} ms"),
    ("… of which the generic request path", "generic_cpu_ms", "{:.2f} ms"),
    ("load average during the single submits", "submit_single_load", "{:.1f}"),
    ("submit, single requests, 4 lean connections", "submit_lean_per_s", "{:,.0f}/s"),
    ("coordinator CPU per lean single submit", "submit_lean_cpu_ms", "{:.2f} ms"),
    ("load average during the lean submits", "submit_lean_load", "{:.1f}"),
    ("submit, batches of 1,000", "submit_batch_per_s", "{:,.0f}/s"),
    ("coordinator CPU per task in a batch", "submit_batch_cpu_ms", "{:.3f} ms"),
    ("load average during the batches", "submit_batch_load", "{:.1f}"),
]


def table(results: list[dict]) -> str:
    parts = [(r, p) for r in results for p in ("empty", "loaded") if p in r]
    head = " | ".join(
        f"{r['backend']} {'empty' if p == 'empty' else '+ history'}" for r, p in parts
    )
    lines = [f"| figure | {head} |", "|---" * (1 + len(parts)) + "|"]
    for title, key, spec in ROWS:
        cells = [spec.format(r[p][key]) if key in r[p] else "-" for r, p in parts]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.submit", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--backend", nargs="+", default=["postgres", "sqlite"])
    parser.add_argument("--servers", type=int, default=1, help="coordinator processes")
    parser.add_argument("--singles", type=int, default=2000, help="single submissions")
    parser.add_argument("--batches", type=int, default=10, help="batches of 1,000")
    parser.add_argument(
        "--service", type=int, default=500, help="service-only submissions (0: no CPU split)"
    )
    parser.add_argument("--finished", type=int, default=1_000_000, help="history size")
    parser.add_argument(
        "--lean-seconds", type=float, default=10, help="how long the lean connections submit"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.singles, args.batches, args.service, args.finished = 200, 2, 50, 20_000
        args.lean_seconds = 2
    results = [asyncio.run(run_backend(backend, args)) for backend in args.backend]
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
