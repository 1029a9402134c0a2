"""End-to-end worker benchmark (issues 3 and 6): a real ``mitosis-server`` and a real
``mitosis-worker`` daemon (``--slots 2``) running real processes, on PostgreSQL and SQLite.

Figures, one Markdown table row each:

* throughput: N ``true`` tasks queued, then the worker started; tasks per second from its
  registration to the last task completed, and the coordinator's and the worker's
  CPU time per task (psutil: user + system seconds of each process, children excluded --
  forking ``true`` is the worker's, its run is the child's -- but the worker's own tree
  keeper counted in);
* idle dispatch to a running process: the worker idle and parked; a task whose command is
  ``tee FIFO`` is submitted, and the benchmark, blocked opening the FIFO for reading,
  wakes when the task's process opens it; from the submit's reply (and from sending it) to
  that moment, p50 and p99;
* the idle worker (daemon and tree keeper): CPU share and resident memory over ``--idle``
  seconds of nothing to do.

``python -m bench.worker [--backend postgres sqlite] [--tasks N] [--latency N] [--idle S]``;
``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from sqlalchemy import func, select

from bench.dispatch import ADMIN, percentile
from bench.servers import PIDS, coordinators, fresh_database
from mitosis_sdk.client import AsyncClient
from mitosis_sdk.schemas import TaskSpec, WorkerQuery
from mitosis_server.db.engine import create_engine
from mitosis_server.db.models import Task

WORKER = str(Path(sys.executable).with_name("mitosis-worker"))


def cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def tree_keeper(daemon: psutil.Process) -> list[psutil.Process]:
    """The daemon's tree keeper (``mitosis_worker.treekeeper``), a part of the worker whose
    CPU and memory count as the worker's: in a list, empty before there was one."""
    return [
        child
        for child in daemon.children()
        if "mitosis_worker.treekeeper" in " ".join(child.cmdline())
    ]


def start_worker(url: str, workdir: Path) -> subprocess.Popen:
    """The real daemon, acting for the admin's group, with its own config directory."""
    env = os.environ | {"XDG_CONFIG_HOME": str(workdir / "config")}
    log = (workdir / "worker.log").open("w")
    options = ["-u", ADMIN[0], "-p", ADMIN[1], "-g", ADMIN[0], "--slots", "2"]
    process = subprocess.Popen(
        [WORKER, "-c", url, *options, "--work-dir", str(workdir / "work")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
    )
    return process


def stop_worker(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


async def wait_for_worker(admin: AsyncClient, process: subprocess.Popen) -> str:
    for _ in range(300):
        if process.poll() is not None:
            raise RuntimeError(f"mitosis-worker exited with {process.returncode}")
        page = await admin.query_workers(WorkerQuery(states=["online"]))
        if page.workers:
            return str(page.workers[0].uuid)
        await asyncio.sleep(0.1)
    raise TimeoutError("the worker did not register")


async def completed(db: str) -> tuple[int, float | None]:
    """(tasks completed, when the last one finished by the coordinator's clock), read from
    the database: polling the API would spend the coordinator CPU time being measured."""
    engine = create_engine(db)
    try:
        async with engine.connect() as connection:
            done = await connection.execute(
                select(func.count(), func.max(Task.finished_at)).where(Task.state == "completed")
            )
            count, last = done.one()
    finally:
        await engine.dispose()
    return count, last.timestamp() if last else None


async def throughput(admin: AsyncClient, url: str, db: str, workdir: Path, n: int):
    """Queue ``n`` tasks, then start the worker; from its registration to the last task
    completed. Returns the figures and the running worker process."""
    for start in range(0, n, 1000):
        await admin.submit_tasks([TaskSpec(command=["true"])] * min(1000, n - start))
    coordinator = psutil.Process(PIDS[url])
    cpu_c = cpu(coordinator)
    process = start_worker(url, workdir)
    worker = await wait_for_worker(admin, process)
    daemon = psutil.Process(process.pid)
    cpu_w = cpu(daemon)
    started = (await admin.get_worker(worker)).created_at.timestamp()
    deadline = time.time() + max(120.0, n / 10)
    while (finished := await completed(db))[0] < n:
        if time.time() > deadline:
            raise TimeoutError("the tasks did not all complete")
        await asyncio.sleep(0.2)
    elapsed = finished[1] - started
    # The keeper started with the worker: all its CPU is this run's.
    keeper = sum(cpu(p) for p in tree_keeper(daemon))
    figures = {
        "tasks_per_s": n / elapsed,
        "coordinator_cpu_ms_per_task": (cpu(coordinator) - cpu_c) * 1000 / n,
        "worker_cpu_ms_per_task": (cpu(daemon) - cpu_w + keeper) * 1000 / n,
        "keeper_cpu_ms_per_task": keeper * 1000 / n,
    }
    return figures, process


def _open_fifo(path: str) -> float:
    """Block until a writer opens the FIFO; when it did."""
    fd = os.open(path, os.O_RDONLY)
    at = time.perf_counter()
    os.close(fd)
    return at


async def spawn_latency(admin: AsyncClient, workdir: Path, n: int) -> dict:
    """Submit → the task's process running, with the worker idle before each submit."""
    sent_to_spawn, accepted_to_spawn = [], []
    for i in range(n):
        fifo = workdir / f"fifo-{i}"
        os.mkfifo(fifo)
        opened = asyncio.create_task(asyncio.to_thread(_open_fifo, str(fifo)))
        await asyncio.sleep(0.25)  # the last result is in, the worker is parked again
        sent = time.perf_counter()
        await admin.submit_task(TaskSpec(command=["tee", str(fifo)]))
        accepted = time.perf_counter()
        at = await asyncio.wait_for(opened, 30)
        sent_to_spawn.append((at - sent) * 1000)
        accepted_to_spawn.append(max(0.0, at - accepted) * 1000)
        fifo.unlink()
    return {
        "spawn_sent_p50_ms": percentile(sent_to_spawn, 50),
        "spawn_sent_p99_ms": percentile(sent_to_spawn, 99),
        "spawn_accepted_p50_ms": percentile(accepted_to_spawn, 50),
        "spawn_accepted_p99_ms": percentile(accepted_to_spawn, 99),
    }


async def idle_footprint(pid: int, seconds: float) -> dict:
    daemon = psutil.Process(pid)
    worker = [daemon, *tree_keeper(daemon)]
    before, started = sum(map(cpu, worker)), time.perf_counter()
    await asyncio.sleep(seconds)
    share = (sum(map(cpu, worker)) - before) / (time.perf_counter() - started) * 100
    rss = sum(p.memory_info().rss for p in worker)
    return {"idle_cpu_percent": share, "idle_rss_mib": rss / 2**20}


async def run_backend(backend: str, args) -> dict:
    with tempfile.TemporaryDirectory(prefix="mito-bench-worker-") as tmp:
        workdir = Path(tmp)
        async with fresh_database(backend, workdir) as db:
            extra = ("--password-hash-memory", "1MiB")
            async with coordinators(db, workdir, 1, *extra) as (url,):
                admin = AsyncClient(url, timeout=120)
                await admin.login(*ADMIN)
                result = {"load_before": os.getloadavg()[0]}
                print(f"[{backend}] throughput, {args.tasks} tasks …", file=sys.stderr)
                figures, process = await throughput(admin, url, db, workdir, args.tasks)
                try:
                    result |= figures
                    print(f"[{backend}] spawn latency, {args.latency} tasks …", file=sys.stderr)
                    result |= await spawn_latency(admin, workdir, args.latency)
                    print(f"[{backend}] idle for {args.idle:.0f} s …", file=sys.stderr)
                    result |= await idle_footprint(process.pid, args.idle)
                    result["load_after"] = os.getloadavg()[0]
                    print(f"[{backend}] {result}", file=sys.stderr)
                finally:
                    stop_worker(process)
                    await admin.aclose()
    return {"backend": backend, **result}


ROWS = [
    ("`true` tasks through the worker (--slots 2)", "tasks_per_s", "tasks/s"),
    ("  coordinator CPU per task", "coordinator_cpu_ms_per_task", "ms"),
    ("  worker CPU per task (daemon and tree keeper)", "worker_cpu_ms_per_task", "ms"),
    ("    of which the tree keeper", "keeper_cpu_ms_per_task", "ms"),
    ("idle submit accepted → process spawned, p50", "spawn_accepted_p50_ms", "ms"),
    ("idle submit accepted → process spawned, p99", "spawn_accepted_p99_ms", "ms"),
    ("idle submit sent → process spawned, p50", "spawn_sent_p50_ms", "ms"),
    ("idle submit sent → process spawned, p99", "spawn_sent_p99_ms", "ms"),
    ("idle worker CPU", "idle_cpu_percent", "%"),
    ("idle worker RSS", "idle_rss_mib", "MiB"),
    ("load average (1 min) before", "load_before", ""),
    ("load average (1 min) after", "load_after", ""),
]


def table(results: list[dict]) -> str:
    lines = ["| figure | " + " | ".join(r["backend"] for r in results) + " |"]
    lines.append("|---" * (1 + len(results)) + "|")
    for title, key, unit in ROWS:
        cells = [f"{r[key]:,.1f} {unit}".strip() for r in results]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker", description=__doc__)
    parser.add_argument("--backend", nargs="+", default=["postgres", "sqlite"])
    parser.add_argument("--tasks", type=int, default=3000, help="tasks for the throughput")
    parser.add_argument("--latency", type=int, default=200, help="idle submissions")
    parser.add_argument("--idle", type=float, default=30.0, help="idle seconds measured")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.latency, args.idle = 200, 10, 3.0
    results = [asyncio.run(run_backend(backend, args)) for backend in args.backend]
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
