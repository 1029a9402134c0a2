"""Log throughput (issue 7, item 2): one task printing ``--line-rate`` lines/s for
``--log-seconds`` under a real ``mitosis-worker``, its live log shipped (a) straight into Redis
with the worker's ACL user, (b) through the coordinator (``--no-redis-log-shipping``), and
(c) not at all: the same task run directly with stdout on /dev/null.

The task paces itself (a burst every 10 ms) and reports how long it took: a worker whose
pipes it had to wait for, or a machine too busy to run it, makes it late. Slowdown is its
time against (c). Lines stored are read back from Redis (the log keeps every line here:
``--log-history`` is raised for the run); lines the worker dropped under overload are
counted from its ``[… N lines dropped]`` markers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from bench.probes import REDIS, cleanup_redis, cpu_seconds, server_pid
from bench.servers import SERVER, coordinators, fresh_database
from mitosis_sdk.client import AsyncClient
from mitosis_sdk.schemas import TaskSpec
from mitosis_sdk.schemas.events import LogChunk
from mitosis_server.events import create_event_bus

WORKER = str(Path(SERVER).with_name("mitosis-worker"))
TASK = """
import sys, time
rate, seconds = {rate}, {seconds}
burst = max(1, rate // 100)
block = ("x" * 60 + "\\n") * burst
start, n, total = time.monotonic(), 0, int(rate * seconds)
while n < total:
    sys.stdout.write(block)
    n += burst
    delay = start + n / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
sys.stdout.flush()
print(f"elapsed {{time.monotonic() - start:.3f}} cpu {{time.process_time():.3f}}", file=sys.stderr)
"""
DROPPED = re.compile(r"^\[… (\d+) lines dropped\]$")


def _script(args) -> str:
    return TASK.format(rate=args.line_rate, seconds=args.log_seconds)


def _elapsed(text: str) -> tuple[float, float]:
    match = re.search(r"elapsed ([\d.]+) cpu ([\d.]+)", text)
    assert match, text
    return float(match[1]), float(match[2])


def baseline(args) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _script(args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=True,
    )
    elapsed, cpu = _elapsed(done.stderr)
    return {"mode": "none (task alone, stdout to /dev/null)", "elapsed": elapsed, "task_cpu": cpu}


async def _shipped(url: str, workdir: Path, prefix: str, args, mode: str) -> dict:
    home = workdir / "home"
    env = {**os.environ, "XDG_CONFIG_HOME": str(home), "XDG_CACHE_HOME": str(home / "cache")}
    with (workdir / "worker.log").open("w") as log:
        worker = await asyncio.create_subprocess_exec(
            *(WORKER, "-c", url, "-u", "mitosis_admin", "-p", "mitosis_admin"),
            *("--work-dir", str(home / "work"), "--heartbeat-interval", "5s"),
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=env,
        )
    coordinator = server_pid(int(url.rsplit(":", 1)[1]))
    try:
        async with AsyncClient(url) as admin:
            await admin.login("mitosis_admin", "mitosis_admin")
            async with asyncio.timeout(30):
                while not (await admin.query_workers()).workers:  # noqa: ASYNC110 (the API)
                    await asyncio.sleep(0.1)
            cpu0 = (cpu_seconds(coordinator), cpu_seconds(worker.pid))
            task = await admin.submit_task(TaskSpec(command=[sys.executable, "-c", _script(args)]))
            async with asyncio.timeout(args.log_seconds * 5 + 60):
                (info,) = await admin.wait_tasks([task.uuid], poll=1.0)
            cpu1 = (cpu_seconds(coordinator), cpu_seconds(worker.pid))
            assert info.state == "completed", info
    finally:
        worker.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(worker.wait(), 30)
    stored, dropped, text = await _read_back(prefix, str(task.uuid))
    elapsed, cpu = _elapsed(text)
    return {
        "mode": mode,
        "elapsed": elapsed,
        "task_cpu": cpu,
        "stored": stored,
        "dropped": dropped,
        "coordinator_cpu": (cpu1[0] - cpu0[0]) / elapsed,
        "worker_cpu": (cpu1[1] - cpu0[1]) / elapsed,
    }


async def _read_back(prefix: str, task: str) -> tuple[int, int, str]:
    """Lines stored (without markers), lines dropped, and the task's stderr."""
    bus = create_event_bus(REDIS, prefix, log_cap=10**7)
    stored = dropped = 0
    stderr: list[str] = []
    cursor = None
    try:
        while chunks := await bus.read_log(task, cursor):
            for chunk in chunks:
                if not isinstance(chunk, LogChunk):
                    continue
                for line in chunk.lines:
                    if marker := DROPPED.match(line.text):
                        dropped += int(marker[1])
                    elif line.stream == "stderr":
                        stderr.append(line.text)
                    else:
                        stored += 1
            cursor = chunks[-1].cursor
            if not isinstance(chunks[-1], LogChunk):
                break
    finally:
        await bus.close()
    return stored, dropped, "\n".join(stderr)


async def measure(workdir: Path, args) -> list[dict]:
    """The three modes, each on a coordinator of its own (fresh SQLite, shared Redis)."""
    rows = [baseline(args)]
    for mode, extra in (
        ("worker → Redis (ACL user)", ()),
        ("worker → coordinator → Redis", ("--no-redis-log-shipping",)),
    ):
        prefix = f"mito-bench-logs-{uuid.uuid4().hex[:8]}"
        directory = workdir / prefix
        directory.mkdir()
        try:
            async with (
                fresh_database("sqlite", directory) as db,
                coordinators(
                    db,
                    directory,
                    1,
                    *("--redis", REDIS, "--redis-prefix", prefix, "--log-history", "10000000"),
                    *("--password-hash-memory", "1MiB", *extra),
                ) as (url,),
            ):
                rows.append(await _shipped(url, directory, prefix, args, mode))
        finally:
            cleanup_redis(prefix)
    return rows


def print_rows(rows: list[dict]) -> None:
    base = rows[0]["elapsed"]
    print(
        "| live log shipping | task time | slowdown | lines stored | lines dropped "
        "| worker CPU | coordinator CPU |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        slowdown = (row["elapsed"] - base) / base * 100
        stored = f"{row['stored']:,}" if "stored" in row else "–"
        dropped = f"{row['dropped']:,}" if "dropped" in row else "–"
        worker = f"{row['worker_cpu']:.2f} cores" if "worker_cpu" in row else "–"
        coordinator = f"{row['coordinator_cpu']:.2f} cores" if "coordinator_cpu" in row else "–"
        print(
            f"| {row['mode']} | {row['elapsed']:.2f} s | {slowdown:+.1f} % | {stored} "
            f"| {dropped} | {worker} | {coordinator} |"
        )


def main() -> int:
    """``python -m bench.live_logs``: this part alone."""
    parser = argparse.ArgumentParser(prog="python -m bench.live_logs")
    parser.add_argument("--line-rate", type=int, default=50_000)
    parser.add_argument("--log-seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mito-bench-logs-") as tmp:
        print_rows(asyncio.run(measure(Path(tmp), args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
