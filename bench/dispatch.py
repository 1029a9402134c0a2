"""Dispatch benchmark (issue 3): real ``mitosis-server`` processes, real HTTP, on PostgreSQL
and SQLite, coordinator and clients on this host.

Figures, each printed as one Markdown table row per backend:

* idle dispatch latency: a worker long-polls (``wait`` 30 s); N sequential submissions; the
  time from sending the submit to the worker holding the task (and from the submit's reply
  to the claim), p50 and p99;
* submit throughput: single submissions from 4 concurrent clients, and batches of 1,000,
  with the coordinator's CPU per task (``bench.submit``, which also runs them alone);
* claim+report throughput: 2 no-op claimers (1 slot each), reporting each result in its
  own request (fetch, report, repeat: two requests per task) and, as the worker daemon does,
  in the next fetch (one request per task); and 2 claimers taking 8 at a time; with the
  coordinator's CPU time per request (psutil: user + system seconds of its process);
* with many finished tasks in the database: a filtered query page (p50), then the figures
  above again.

``python -m bench --help`` for the sizes; ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
from sqlalchemy import text

from bench.servers import PIDS, coordinators, fresh_database
from bench.submit import submit_throughput
from mitosis_sdk.client import AsyncClient
from mitosis_sdk.schemas import (
    ResultEntry,
    ResultReport,
    TaskQuery,
    TaskSpec,
    TaskState,
)
from mitosis_server.db.engine import create_engine

ADMIN = ("mitosis_admin", "mitosis_admin")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def _client(url: str) -> AsyncClient:
    client = AsyncClient(url, timeout=120)
    await client.login(*ADMIN)
    return client


async def _worker(admin: AsyncClient, url: str, slots: int = 1) -> tuple[AsyncClient, str]:
    registered = await admin.register_worker(slots=slots)
    return AsyncClient(url, registered.token, timeout=120), str(registered.worker.uuid)


async def idle_latency(urls: list[str], n: int) -> dict:
    admin = await _client(urls[0])
    worker, wid = await _worker(admin, urls[-1])
    claimed: asyncio.Queue[float] = asyncio.Queue()
    parked = asyncio.Event()

    async def claimer() -> None:
        for _ in range(n):
            while True:
                parked.set()
                reply = await worker.fetch_tasks(wid, wait=30)
                if reply.tasks:
                    break
            claimed.put_nowait(time.perf_counter())
            parked.clear()
            task = reply.tasks[0]
            await worker.report_result(wid, task.task, task.attempt, exit_code=0)

    running = asyncio.create_task(claimer())
    sent_to_claim, accepted_to_claim = [], []
    spec = TaskSpec(command=["true"])
    for _ in range(n):
        await parked.wait()
        await asyncio.sleep(0.01)  # the fetch has arrived and parked
        sent = time.perf_counter()
        await admin.submit_task(spec)
        accepted = time.perf_counter()
        at = await asyncio.wait_for(claimed.get(), 30)
        sent_to_claim.append((at - sent) * 1000)
        accepted_to_claim.append(max(0.0, at - accepted) * 1000)
    await running
    await worker.aclose()
    await admin.aclose()
    return {
        "latency_p50_ms": percentile(sent_to_claim, 50),
        "latency_p99_ms": percentile(sent_to_claim, 99),
        "accepted_p50_ms": percentile(accepted_to_claim, 50),
        "accepted_p99_ms": percentile(accepted_to_claim, 99),
    }


def cpu_seconds(urls: list[str]) -> float:
    """User + system CPU seconds the coordinator processes have used so far."""
    return sum(sum(psutil.Process(PIDS[url]).cpu_times()[:2]) for url in urls)


async def claim_throughput(
    urls: list[str], tasks: int, per_fetch: int, combined: bool
) -> tuple[float, float]:
    """(tasks per second, coordinator CPU milliseconds per request) for 2 claimers."""
    admin = await _client(urls[0])
    for start in range(0, tasks, 1000):
        await admin.submit_tasks([TaskSpec(command=["true"])] * min(1000, tasks - start))
    done = requests = 0

    async def claimer(index: int) -> None:
        nonlocal done, requests
        client, wid = await _worker(admin, urls[index % len(urls)], slots=per_fetch)
        results: list[ResultEntry] = []
        while done < tasks or results:
            reply = await client.fetch_tasks(
                wid, max_tasks=per_fetch if done < tasks else 0, wait=1, results=results
            )
            requests += 1
            results = []
            for task in reply.tasks:
                if combined:  # reported by the next fetch
                    report = ResultReport(attempt=task.attempt, exit_code=0)
                    results.append(ResultEntry(task=task.task, report=report))
                else:
                    await client.report_result(wid, task.task, task.attempt, exit_code=0)
                    requests += 1
                done += 1
        await client.aclose()

    cpu = cpu_seconds(urls)
    started = time.perf_counter()
    await asyncio.gather(claimer(0), claimer(1))
    rate = tasks / (time.perf_counter() - started)
    cpu_ms = (cpu_seconds(urls) - cpu) * 1000 / requests
    await admin.aclose()
    return rate, cpu_ms


async def query_latency(urls: list[str], n: int = 50) -> dict:
    client = await _client(urls[0])
    queries = {
        "query_failed_p50_ms": TaskQuery(group=ADMIN[0], states=[TaskState.FAILED], limit=50),
        "query_label_p50_ms": TaskQuery(labels=["sweep-7"], limit=50),
        "query_newest_p50_ms": TaskQuery(limit=50),
    }
    result = {}
    for name, query in queries.items():
        timings = []
        for _ in range(n):
            started = time.perf_counter()
            await client.query_tasks(query)
            timings.append((time.perf_counter() - started) * 1000)
        result[name] = statistics.median(timings)
    await client.aclose()
    return result


async def add_finished_tasks(db: str, count: int) -> float:
    """``count`` finished tasks of the admin's group written straight into the database
    (1% failed and labelled ``sweep-<n>``), as months of history would leave them."""
    engine = create_engine(db)
    started = time.perf_counter()
    sqlite = engine.dialect.name == "sqlite"
    uuid_sql = "lower(hex(randomblob(16)))" if sqlite else "gen_random_uuid()"
    now = "datetime('now')" if sqlite else "now()"
    js = "" if sqlite else "::json"
    series = (
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :n) "
        "SELECT i FROM s"
        if sqlite
        else "SELECT generate_series(1, :n) AS i"
    )
    async with engine.begin() as conn:
        group, seq = (
            await conn.execute(
                text("SELECT id, task_seq FROM groups WHERE name = :g"), {"g": ADMIN[0]}
            )
        ).one()
        await conn.execute(
            text(
                "INSERT INTO tasks (uuid, group_id, seq, creator_id, state, priority, command,"
                " command_line, tags, labels, spec, timeout, retries, max_attempts, attempt,"
                " exit_code, created_at, started_at, finished_at, reason)"
                f" SELECT {uuid_sql}, :g, :seq + i, 1,"
                " CASE WHEN i % 100 = 0 THEN 'failed' ELSE 'completed' END, 0, '[\"true\"]',"
                " 'true', '[]',"
                " (CASE WHEN i % 100 = 0 THEN '[\"sweep-' || (i % 1000 / 100) || '\"]'"
                f" ELSE '[]' END){js}, '{{}}', 600, 0, 3, 1,"
                " CASE WHEN i % 100 = 0 THEN 1 ELSE 0 END,"
                f" {now}, {now}, {now}, CASE WHEN i % 100 = 0 THEN 'nonzero_exit' END"
                f" FROM ({series}) AS series"
            ),
            {"g": group, "seq": seq, "n": count},
        )
        await conn.execute(
            text(
                "INSERT INTO task_labels (task_id, label) SELECT id, 'sweep-' || ((seq - :seq)"
                " % 1000 / 100) FROM tasks WHERE group_id = :g AND seq > :seq AND state = 'failed'"
            ),
            {"g": group, "seq": seq},
        )
        await conn.execute(
            text("UPDATE groups SET task_seq = task_seq + :n WHERE id = :g"),
            {"n": count, "g": group},
        )
    # Fresh statistics and (PostgreSQL) a visibility map, as autovacuum would leave them;
    # then a checkpoint, so writing out the fill does not run into the measurements.
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        for table in ("tasks", "task_labels"):
            await conn.execute(text(f"ANALYZE {table}" if sqlite else f"VACUUM ANALYZE {table}"))
        if not sqlite:
            await conn.execute(text("CHECKPOINT"))
    await engine.dispose()
    return time.perf_counter() - started


async def commit_latency(db: str, n: int = 200) -> float:
    """p50 milliseconds of a one-row INSERT in its own transaction on the bench database:
    the durable commit every claim, report and submit waits for, the floor of their latency
    (and, for a client that waits for each answer, of its rate)."""
    engine = create_engine(db)
    timings = []
    async with engine.connect() as conn:
        await conn.execute(text("CREATE TABLE commit_probe (x INTEGER)"))
        await conn.commit()
        for _ in range(n):
            started = time.perf_counter()
            await conn.execute(text("INSERT INTO commit_probe VALUES (1)"))
            await conn.commit()
            timings.append((time.perf_counter() - started) * 1000)
        await conn.execute(text("DROP TABLE commit_probe"))
        await conn.commit()
    await engine.dispose()
    return statistics.median(timings)


async def figures(urls: list[str], args, db: str) -> dict:
    result = {"load_before": os.getloadavg()[0], "commit_p50_ms": await commit_latency(db)}
    result |= await idle_latency(urls, args.latency)
    result |= await submit_throughput(urls, args.singles, args.batches, 2 if args.quick else 10)
    for key, per_fetch, combined in (
        ("claim_report", 1, False),
        ("claim_combined", 1, True),
        ("claim8_combined", 8, True),
    ):
        rate, cpu_ms = await claim_throughput(urls, args.claims, per_fetch, combined)
        result[f"{key}_per_s"], result[f"{key}_cpu_ms"] = rate, cpu_ms
    result["load_after"] = os.getloadavg()[0]
    return result


async def run_backend(backend: str, args) -> dict:
    with tempfile.TemporaryDirectory(prefix="mito-bench-") as tmp:
        workdir = Path(tmp)
        async with fresh_database(backend, workdir) as db:
            extra = ["--password-hash-memory", "1MiB"]
            if args.redis:  # wake-ups and events shared by the coordinators, own key prefix
                extra += ["--redis", args.redis, "--redis-prefix", f"bench-{uuid.uuid4().hex[:8]}"]
            async with coordinators(db, workdir, args.servers, *extra) as urls:
                print(f"[{backend}] measuring on an empty database …", file=sys.stderr)
                empty = await figures(urls, args, db)
                empty |= await query_latency(urls)
                print(f"[{backend}] {empty}", file=sys.stderr)
                loaded = {}
                if args.finished:
                    print(f"[{backend}] adding {args.finished:,} finished tasks …", file=sys.stderr)
                    loaded["fill_s"] = await add_finished_tasks(db, args.finished)
                    loaded |= await query_latency(urls)
                    loaded |= await figures(urls, args, db)
                    print(f"[{backend}] {loaded}", file=sys.stderr)
    return {"backend": backend, "servers": args.servers, "empty": empty, "loaded": loaded}


ROWS = [
    ("one-row commit p50 (the database's durable commit)", "commit_p50_ms", "ms"),
    ("idle dispatch latency p50 (submit sent → claimed)", "latency_p50_ms", "ms"),
    ("idle dispatch latency p99 (submit sent → claimed)", "latency_p99_ms", "ms"),
    ("idle dispatch latency p50 (submit accepted → claimed)", "accepted_p50_ms", "ms"),
    ("idle dispatch latency p99 (submit accepted → claimed)", "accepted_p99_ms", "ms"),
    ("submit, single requests, 4 clients", "submit_single_per_s", "tasks/s"),
    ("coordinator CPU per single submit", "submit_single_cpu_ms", "ms"),
    ("submit, single requests, 4 lean connections", "submit_lean_per_s", "tasks/s"),
    ("coordinator CPU per lean single submit", "submit_lean_cpu_ms", "ms"),
    ("submit, batches of 1,000", "submit_batch_per_s", "tasks/s"),
    ("coordinator CPU per task in batches", "submit_batch_cpu_us", "µs"),
    ("claim+report, 2 claimers × 1 task, report apart", "claim_report_per_s", "tasks/s"),
    ("  coordinator CPU per request", "claim_report_cpu_ms", "ms"),
    ("claim+report, 2 claimers × 1 task, report in next fetch", "claim_combined_per_s", "tasks/s"),
    ("  coordinator CPU per request (= per task)", "claim_combined_cpu_ms", "ms"),
    ("claim+report, 2 claimers × 8 per fetch, report in next", "claim8_combined_per_s", "tasks/s"),
    ("  coordinator CPU per request", "claim8_combined_cpu_ms", "ms"),
    ("filtered query page p50 (group + state=failed)", "query_failed_p50_ms", "ms"),
    ("filtered query page p50 (label)", "query_label_p50_ms", "ms"),
    ("query page p50 (newest first, no filter)", "query_newest_p50_ms", "ms"),
    ("load average (1 min) before", "load_before", ""),
    ("load average (1 min) after", "load_after", ""),
]


def table(results: list[dict]) -> str:
    head = "| figure | " + " | ".join(
        f"{r['backend']} empty | {r['backend']} + history" for r in results
    )
    lines = [head + " |", "|---" * (1 + 2 * len(results)) + "|"]
    for title, key, unit in ROWS:
        cells = []
        for r in results:
            for part in ("empty", "loaded"):
                value = r[part].get(key)
                cells.append("-" if value is None else f"{value:,.1f} {unit}")
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--backend", nargs="+", default=["postgres", "sqlite"])
    parser.add_argument("--servers", type=int, default=1, help="coordinator processes")
    parser.add_argument("--redis", metavar="URL", help="event bus for the coordinators")
    parser.add_argument("--latency", type=int, default=500, help="sequential submissions")
    parser.add_argument("--singles", type=int, default=2000, help="single submissions")
    parser.add_argument("--batches", type=int, default=10, help="batches of 1,000")
    parser.add_argument("--claims", type=int, default=3000, help="tasks claimed and reported")
    parser.add_argument("--finished", type=int, default=1_000_000, help="history size")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.latency, args.singles, args.batches, args.claims, args.finished = (
            30,
            200,
            2,
            200,
            20_000,
        )
    results = [asyncio.run(run_backend(backend, args)) for backend in args.backend]
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
