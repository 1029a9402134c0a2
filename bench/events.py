"""Live-stream benchmark (issue 7): real ``mitosis-server`` processes on Redis, real HTTP/SSE.

* Fan-out: ``--clients`` SSE connections to ``GET /api/events`` (spread over ``--procs``
  client processes, each parsing raw chunks so the clients are not the bottleneck), while
  this process appends ``--rate`` events/s for ``--seconds`` straight into the coordinator's
  Redis stream (the path a committed change takes after its commit). Each event carries its
  send time; figures: delivered/expected, p50/p99/max delivery latency, coordinator CPU.
* Across two coordinators (PostgreSQL + Redis): a fetch parked on B claiming a task
  submitted on A (submit accepted → claimed), a logout on A refused on B, and an event
  stream open on B ending after a logout on A.
* Log throughput (``bench/live_logs.py``): one task printing 50,000 lines/s under a real
  ``mitosis-worker``, shipped straight into Redis and through the coordinator, against the
  same task writing to /dev/null.

``python -m bench.events --quick`` for a smoke run; prints Markdown rows for REPORT.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from bench import live_logs
from bench.probes import REDIS, cleanup_redis, cpu_seconds, load_average, percentile, server_pid
from bench.servers import coordinators, fresh_database
from mitosis_sdk.client import AsyncClient
from mitosis_sdk.errors import Unauthorized
from mitosis_sdk.schemas import TaskSpec
from mitosis_sdk.schemas.events import Event, EventKind
from mitosis_server.events import create_event_bus

ADMIN = ("mitosis_admin", "mitosis_admin")


# -- fan-out -----------------------------------------------------------------------------------


SENT = re.compile(rb'"sent":([0-9.e+-]+)')


async def _client(
    url: str, token: str, ready, stop_at: float, latencies: list[float], dropped: list[int]
) -> None:
    """One SSE connection: each raw chunk's send times found by one regex (no JSON parsing:
    100 connections at 1,000 events/s are 100,000 items/s for a few client processes)."""
    headers = {"Authorization": f"Bearer {token}"}
    timeout = httpx.Timeout(10.0, read=60.0)
    async with (
        httpx.AsyncClient(timeout=timeout) as http,
        http.stream("GET", f"{url}/api/events", headers=headers) as response,
    ):
        ready()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(stop_at - time.time()):
                async for chunk in response.aiter_raw():
                    now = time.time()
                    latencies.extend(now - float(sent) for sent in SENT.findall(chunk))
                    if b"event: error" in chunk:
                        dropped.append(1)
                        return


def _client_process(url: str, token: str, count: int, stop_at: float, queue) -> None:
    async def run() -> tuple[list[float], int]:
        latencies: list[float] = []
        dropped: list[int] = []
        connected = 0

        def ready() -> None:
            nonlocal connected
            connected += 1
            if connected == count:
                queue.put(("ready", None))

        async with asyncio.timeout(stop_at - time.time() + 30):
            await asyncio.gather(
                *(_client(url, token, ready, stop_at, latencies, dropped) for _ in range(count)),
                return_exceptions=True,
            )
        return latencies, len(dropped)

    queue.put(("done", asyncio.run(run())))


async def fan_out(url: str, prefix: str, args) -> dict:
    async with AsyncClient(url) as admin:
        token = (await admin.login(*ADMIN)).token
    per = args.clients // args.procs
    stop_at = time.time() + 10 + args.seconds
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    procs = [
        context.Process(target=_client_process, args=(url, token, per, stop_at, queue))
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
        await asyncio.sleep(max(0.0, start + sent / args.rate - loop.time()))
    elapsed = loop.time() - start
    cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - wall0)
    load = load_average()
    await bus.close()
    latencies: list[float] = []
    dropped = 0
    for _ in procs:  # each client process reports once its connections reach stop_at
        _, (values, slow) = await asyncio.to_thread(queue.get, True, stop_at - time.time() + 60)
        latencies += values
        dropped += slow
    for proc in procs:
        proc.join(10)
    return {
        "sent": sent,
        "rate": sent / elapsed,
        "cpu": cpu,
        "latencies": latencies,
        "load": load,
        "dropped": dropped,
    }


# -- two coordinators --------------------------------------------------------------------------


async def wake_ups(a: str, b: str, rounds: int) -> list[float]:
    """Seconds from a submit accepted on A to the task claimed by a fetch parked on B."""
    async with AsyncClient(a) as admin:
        await admin.login(*ADMIN)
        registered = await admin.register_worker(version="bench")
        worker = registered.worker.uuid
        seconds = []
        async with AsyncClient(b, registered.token) as client:
            for _ in range(rounds):
                claimed_at = 0.0

                async def fetch() -> None:
                    nonlocal claimed_at
                    reply = await client.fetch_tasks(worker, wait=10.0)
                    claimed_at = time.perf_counter()
                    for task in reply.tasks:
                        await client.report_result(worker, task.task, task.attempt, exit_code=0)

                parked = asyncio.create_task(fetch())
                await asyncio.sleep(0.3)
                await admin.submit_task(TaskSpec(command=["true"]))
                accepted = time.perf_counter()
                await parked
                seconds.append(claimed_at - accepted)
    return seconds


async def revocations(a: str, b: str, rounds: int) -> tuple[list[float], list[float]]:
    """Seconds from a logout on A to B refusing the token, and to B ending an open stream."""
    refused, ended = [], []
    for _ in range(rounds):
        async with AsyncClient(a) as here:
            await here.login(*ADMIN)
            async with AsyncClient(b, here.token) as there:
                await there.whoami()
                started = time.perf_counter()
                await here.logout()
                while True:
                    try:
                        await there.whoami()
                    except Unauthorized:
                        break
                    await asyncio.sleep(0.005)
                refused.append(time.perf_counter() - started)
        async with AsyncClient(a) as here:
            await here.login(*ADMIN)
            async with AsyncClient(b, here.token) as there:

                async def follow() -> None:
                    with contextlib.suppress(Unauthorized):
                        async for _ in there.events():
                            pass

                stream = asyncio.create_task(follow())
                await asyncio.sleep(0.5)
                started = time.perf_counter()
                await here.logout()
                await asyncio.wait_for(stream, 10)
                ended.append(time.perf_counter() - started)
    return refused, ended


# -- the run -----------------------------------------------------------------------------------


def print_fan_out(fan: dict, args) -> None:
    latencies = [x * 1000 for x in fan["latencies"]]
    expected = fan["sent"] * (args.clients // args.procs) * args.procs
    print(
        "| clients | events/s sent | delivered | dropped as too slow | p50 ms | p99 ms | max ms "
        "| coordinator CPU | load average |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.clients} ({args.procs} client processes) | {fan['rate']:.0f} "
        f"| {len(latencies):,}/{expected:,} | {fan['dropped']} "
        f"| {statistics.median(latencies) if latencies else 0:.1f} "
        f"| {percentile(latencies, 99):.1f} | {max(latencies, default=0):.1f} "
        f"| {fan['cpu']:.2f} cores | {fan['load']} |"
    )
    print()


def ms(values: list[float], p: float) -> str:
    return f"{percentile([v * 1000 for v in values], p):.1f}"


async def run(args) -> int:
    prefix = f"mito-bench-{uuid.uuid4().hex[:8]}"
    print(f"load average at start: {load_average()}\n")
    try:
        with tempfile.TemporaryDirectory(prefix="mito-bench-events-") as tmp:
            async with (
                fresh_database("postgres", Path(tmp)) as db,
                coordinators(
                    db,
                    Path(tmp),
                    2,
                    *("--redis", REDIS, "--redis-prefix", prefix),
                    *("--password-hash-memory", "1MiB"),
                ) as (a, b),
            ):
                fan = await fan_out(b, prefix, args) if "fanout" in args.parts else None
                if "replicas" in args.parts:
                    wakes = await wake_ups(a, b, args.rounds)
                    refused, ended = await revocations(a, b, max(3, args.rounds // 5))
                logs = await live_logs.measure(Path(tmp), args) if "logs" in args.parts else None
    finally:
        cleanup_redis(prefix)
    if fan is not None:
        print_fan_out(fan, args)
    if "replicas" in args.parts:
        print("| across two coordinators | p50 ms | p99 ms | max ms | rounds |")
        print("|---|---|---|---|---|")
        for name, values in (
            ("submit accepted on A → claimed by a fetch parked on B", wakes),
            ("logout on A → token refused on B", refused),
            ("logout on A → open event stream on B ended", ended),
        ):
            print(
                f"| {name} | {ms(values, 50)} | {ms(values, 99)} | {ms(values, 100)} "
                f"| {len(values)} |"
            )
        print()
    if logs is not None:
        live_logs.print_rows(logs)
    print(f"\nload average at the end: {load_average()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.events", description=__doc__)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--procs", type=int, default=4, help="client processes")
    parser.add_argument("--rate", type=int, default=1000, help="events per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=50, help="wake-up measurements")
    parser.add_argument("--line-rate", type=int, default=50_000, help="task lines per second")
    parser.add_argument("--log-seconds", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="10 clients, 2 s, short logs")
    parser.add_argument(
        "--parts", default="fanout,replicas,logs", help="comma-separated: fanout,replicas,logs"
    )
    args = parser.parse_args(argv)
    args.parts = set(args.parts.split(","))
    if args.quick:
        args.clients, args.procs, args.seconds, args.rounds, args.log_seconds = 10, 2, 2, 5, 2
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
