"""Live-stream benchmark (issue 7): one real ``mitosis-server`` on Redis, real HTTP/SSE.

* Event fan-out: ``--clients`` SSE connections to ``GET /api/events`` (spread over
  ``--procs`` client processes so the clients are not the bottleneck), while this process
  appends ``--rate`` events/s for ``--seconds`` straight into the coordinator's Redis stream
  (the path a committed change takes after its commit). Each event carries its send time;
  figures: delivered/expected, p50/p99/max delivery latency, coordinator CPU (cores).
* Log throughput: one fake worker ships ``--lines`` lines through
  ``POST /api/workers/{w}/tasks/{t}/logs`` in batches of 1,000; lines/s accepted.

``python -m bench.events --quick`` for a smoke run; prints Markdown rows for REPORT.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import msgspec

from bench.servers import coordinators, fresh_database
from mitosis_sdk.client import AsyncClient
from mitosis_sdk.schemas import TaskSpec
from mitosis_sdk.schemas.events import Event, EventKind
from mitosis_server.events import create_event_bus

ADMIN = ("mitosis_admin", "mitosis_admin")
REDIS = "redis://127.0.0.1:6379/0"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pid(port: int) -> int:
    """The coordinator listening on ``port`` (found through /proc, no extra packages)."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[1].endswith(f":{port:04X}") and parts[3] == "0A":
            inode = parts[9]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return int(pid)
        except OSError:
            continue
    raise RuntimeError("coordinator process not found")


_decoder = msgspec.json.Decoder(Event)


async def _client(url: str, token: str, ready, stop_at: float, latencies: list[float]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    timeout = httpx.Timeout(10.0, read=60.0)
    async with (
        httpx.AsyncClient(timeout=timeout) as http,
        http.stream("GET", f"{url}/api/events", headers=headers) as response,
    ):
        ready()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(stop_at - time.time()):
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        event = _decoder.decode(line[5:])
                        latencies.append(time.time() - event.payload["sent"])


def _client_process(url: str, token: str, count: int, stop_at: float, queue) -> None:
    async def run() -> list[float]:
        latencies: list[float] = []
        connected = 0

        def ready() -> None:
            nonlocal connected
            connected += 1
            if connected == count:
                queue.put(("ready", None))

        async with asyncio.timeout(stop_at - time.time() + 30):
            await asyncio.gather(
                *(_client(url, token, ready, stop_at, latencies) for _ in range(count)),
                return_exceptions=True,
            )
        return latencies

    queue.put(("done", asyncio.run(run())))


async def fan_out(url: str, prefix: str, args) -> dict:
    async with AsyncClient(url) as admin:
        token = (await admin.login(*ADMIN)).token
    per = args.clients // args.procs
    warmup = 3.0
    stop_at = time.time() + 2 * warmup + args.seconds + 5
    queue = multiprocessing.get_context("spawn").Queue()
    procs = [
        multiprocessing.get_context("spawn").Process(
            target=_client_process, args=(url, token, per, stop_at, queue)
        )
        for _ in range(args.procs)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        kind, _ = await asyncio.to_thread(queue.get, True, 60)
        assert kind == "ready"
    await asyncio.sleep(1.0)
    bus = create_event_bus(REDIS, prefix)
    await bus.start()
    pid = server_pid(int(url.rsplit(":", 1)[1]))
    cpu0, wall0 = cpu_seconds(pid), time.monotonic()
    sent, tick = 0, 0.05
    per_tick = max(1, int(args.rate * tick))
    loop = asyncio.get_running_loop()
    start = loop.time()
    while loop.time() - start < args.seconds:
        events = [
            Event(
                kind=EventKind.TASK_STATE,
                groups=["bench"],
                object_id=str(uuid.uuid4()),
                payload={"state": "ready", "sent": time.time()},
            )
            for _ in range(per_tick)
        ]
        await bus.publish(*events)
        sent += len(events)
        next_at = start + (sent / args.rate)
        await asyncio.sleep(max(0.0, next_at - loop.time()))
    elapsed = loop.time() - start
    await asyncio.sleep(3.0)  # let the tail arrive
    cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - wall0)
    await bus.close()
    latencies: list[float] = []
    for _ in procs:  # each client process reports once its connections reach stop_at
        kind, values = await asyncio.to_thread(queue.get, True, stop_at - time.time() + 60)
        latencies += values
    for proc in procs:
        proc.join(10)
    return {
        "sent": sent,
        "rate": sent / elapsed,
        "cpu": cpu,
        "latencies": latencies,
    }


async def log_throughput(url: str, lines: int) -> float:
    async with AsyncClient(url) as admin:
        await admin.login(*ADMIN)
        registered = await admin.register_worker(version="bench")
        worker = str(registered.worker.uuid)
        await admin.submit_task(TaskSpec(command=["true"]))
        async with AsyncClient(url, registered.token) as client:
            (task,) = (await client.fetch_tasks(worker, wait=5.0)).tasks
            batch = [("stdout", "x" * 60)] * 1000
            started = time.monotonic()
            for _ in range(lines // 1000):
                await client.ship_logs(worker, task.task, task.attempt, batch)
            return lines / (time.monotonic() - started)


async def run(args) -> int:
    prefix = f"mito-bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="mito-bench-events-") as tmp:
        async with (
            fresh_database("sqlite", Path(tmp)) as db,
            coordinators(
                db,
                Path(tmp),
                1,
                "--redis",
                REDIS,
                "--redis-prefix",
                prefix,
                "--password-hash-memory",
                "1MiB",
            ) as (url,),
        ):
            fan = await fan_out(url, prefix, args)
            shipped = await log_throughput(url, args.lines)
    latencies = [x * 1000 for x in fan["latencies"]]
    expected = fan["sent"] * (args.clients // args.procs) * args.procs
    print("| clients | events/s sent | delivered | p50 ms | p99 ms | max ms | coordinator CPU |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {args.clients} | {fan['rate']:.0f} | {len(latencies)}/{expected} "
        f"| {statistics.median(latencies) if latencies else 0:.1f} "
        f"| {percentile(latencies, 99):.1f} | {max(latencies, default=0):.1f} "
        f"| {fan['cpu']:.2f} cores |"
    )
    print()
    print("| log lines shipped | lines/s accepted (batches of 1,000, one client) |")
    print("|---|---|")
    print(f"| {args.lines} | {shipped:,.0f} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.events", description=__doc__)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--procs", type=int, default=4, help="client processes")
    parser.add_argument("--rate", type=int, default=1000, help="events per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true", help="10 clients, 2 s, 20k lines")
    args = parser.parse_args(argv)
    if args.quick:
        args.clients, args.procs, args.seconds, args.lines = 10, 2, 2.0, 20_000
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
