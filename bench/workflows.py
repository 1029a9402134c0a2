"""Workflow benchmark (issue 4): a real ``mitosis-server`` process over PostgreSQL and SQLite.

* releasing N dependents: N tasks ``afterok`` one upstream (submitted in batches of 10,000),
  then the time of the upstream's result report — the request whose transaction moves every
  dependent to ``ready`` (set-based UPDATEs) — and a check that all N are ready;
* an array of N accepted: the time of one ``tasks submit --array 0-(N-1)`` request.

``python -m bench.workflows [--dependents N] [--array N] [--backends postgresql,sqlite]``;
prints Markdown table rows.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from bench.servers import coordinators, fresh_database
from mitosis_sdk.client import AsyncClient
from mitosis_sdk.schemas import Dependency, TaskQuery, TaskSpec

ADMIN = ("mitosis_admin", "mitosis_admin")


async def release_dependents(url: str, n: int) -> tuple[float, int]:
    admin = AsyncClient(url, timeout=300)
    await admin.login(*ADMIN)
    up = await admin.submit_task(TaskSpec(command=["true"]))
    dependent = TaskSpec(command=["true"], depends_on=[Dependency(task=up.uuid)])
    for start in range(0, n, 10_000):
        await admin.submit_tasks([dependent] * min(10_000, n - start), all_or_nothing=True)
    registered = await admin.register_worker(slots=1)
    worker = AsyncClient(url, registered.token, timeout=300)
    wid = str(registered.worker.uuid)
    (task,) = (await worker.fetch_tasks(wid)).tasks
    began = time.perf_counter()
    await worker.report_result(wid, task.task, task.attempt, exit_code=0)
    elapsed = time.perf_counter() - began
    ready = (await admin.query_tasks(TaskQuery(states=["ready"], limit=1))).total
    return elapsed, ready


async def array_accepted(url: str, n: int) -> tuple[float, int]:
    admin = AsyncClient(url, timeout=300)
    await admin.login(*ADMIN)
    began = time.perf_counter()
    reply = await admin.submit_array(TaskSpec(command=["true"]), f"0-{n - 1}")
    return time.perf_counter() - began, reply.count


async def run(backends: list[str], dependents: int, array: int) -> None:
    print("| backend | release N dependents (report request) | ready after | array of N accepted |")
    print("|---|---|---|---|")
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            async with (
                fresh_database(backend, workdir) as db,
                coordinators(db, workdir) as urls,
            ):
                release, ready = await release_dependents(urls[0], dependents)
                accepted, count = await array_accepted(urls[0], array)
        print(
            f"| {backend} | {dependents:,}: {release:.2f} s | {ready:,} | "
            f"{count:,}: {accepted:.2f} s |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.workflows")
    parser.add_argument("--dependents", type=int, default=10_000)
    parser.add_argument("--array", type=int, default=10_000)
    parser.add_argument("--backends", default="postgresql,sqlite")
    args = parser.parse_args(argv)
    asyncio.run(run(args.backends.split(","), args.dependents, args.array))
    return 0


if __name__ == "__main__":
    sys.exit(main())
