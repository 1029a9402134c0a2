"""Workflow benchmark (issue 4): a real ``mitosis-server`` process over PostgreSQL and SQLite.

* releasing N dependents: N tasks ``afterok`` one upstream (submitted in batches of 10,000),
  then the time of the upstream's result report — the request whose transaction moves every
  dependent to ``ready`` (set-based UPDATEs) — and a check that all N are ready;
* an array of N accepted: the time of one ``tasks submit --array 0-(N-1)`` request.

Each with the coordinator's CPU for that request and the load average, on an empty database
and again on top of ``--finished`` finished tasks (``--finished 0`` skips that).

``python -m bench.workflows [--dependents N] [--array N] [--finished N] [--backends
postgresql,sqlite] [--quick]``; prints Markdown table rows.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from bench.dispatch import add_finished_tasks
from bench.servers import coordinators, fresh_database
from bench.submit import CpuMeter
from mitosis_sdk.client import AsyncClient
from mitosis_sdk.schemas import Dependency, TaskFilter, TaskQuery, TaskSpec

ADMIN = ("mitosis_admin", "mitosis_admin")


async def release_dependents(url: str, n: int, meter: CpuMeter) -> dict:
    admin = AsyncClient(url, timeout=300)
    await admin.login(*ADMIN)
    up = await admin.submit_task(TaskSpec(command=["true"]))
    dependent = TaskSpec(command=["true"], depends_on=[Dependency(task=up.uuid)])
    with meter.measure() as submitted:
        for start in range(0, n, 10_000):
            await admin.submit_tasks([dependent] * min(10_000, n - start), all_or_nothing=True)
    registered = await admin.register_worker(slots=1)
    worker = AsyncClient(url, registered.token, timeout=300)
    wid = str(registered.worker.uuid)
    (task,) = (await worker.fetch_tasks(wid)).tasks
    with meter.measure() as released:
        await worker.report_result(wid, task.task, task.attempt, exit_code=0)
    ready = (await admin.query_tasks(TaskQuery(states=["ready"], limit=1))).total
    await admin.cancel_tasks(task_filter=TaskFilter(states=["ready"]))
    await worker.aclose()
    await admin.aclose()
    return {"submit": submitted, "release": released, "ready": ready}


async def array_accepted(url: str, n: int, meter: CpuMeter) -> dict:
    admin = AsyncClient(url, timeout=300)
    await admin.login(*ADMIN)
    with meter.measure() as accepted:
        reply = await admin.submit_array(TaskSpec(command=["true"]), f"0-{n - 1}")
    await admin.cancel_tasks(task_filter=TaskFilter(array=reply.array_id))  # none left queued
    await admin.aclose()
    return {"array": accepted, "count": reply.count}


def _cell(measured: dict) -> str:
    return f"{measured['wall']:.2f} s (CPU {measured['cpu']:.2f} s, load {measured['load']:.1f})"


async def run(backends: list[str], dependents: int, array: int, finished: int) -> None:
    print(
        "| backend | history | submit N dependents | release N dependents (report request)"
        " | ready after | array of N accepted |"
    )
    print("|---|---|---|---|---|---|")
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            async with (
                fresh_database(backend, workdir) as db,
                coordinators(db, workdir) as urls,
            ):
                meter = CpuMeter(urls)
                for history in (0, finished) if finished else (0,):
                    if history:
                        await add_finished_tasks(db, history)
                    release = await release_dependents(urls[0], dependents, meter)
                    accepted = await array_accepted(urls[0], array, meter)
                    print(
                        f"| {backend} | {history:,} | {dependents:,}: {_cell(release['submit'])}"
                        f" | {_cell(release['release'])} | {release['ready']:,}"
                        f" | {accepted['count']:,}: {_cell(accepted['array'])} |",
                        flush=True,
                    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.workflows")
    parser.add_argument("--dependents", type=int, default=10_000)
    parser.add_argument("--array", type=int, default=10_000)
    parser.add_argument("--finished", type=int, default=1_000_000, help="history size (0: none)")
    parser.add_argument("--backends", default="postgresql,sqlite")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.dependents, args.array, args.finished = 500, 500, 5_000
    asyncio.run(run(args.backends.split(","), args.dependents, args.array, args.finished))
    return 0


if __name__ == "__main__":
    sys.exit(main())
