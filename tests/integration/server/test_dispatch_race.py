"""The race proof (FEATURES S3): concurrent claimers against real ``mitosis-server``
processes over one database take every task exactly once and leave none behind.

PostgreSQL: two coordinators (sharing one key pair) and 8 claimers spread over both.
SQLite: one coordinator and the same 8 claimers. Each claimer is a worker token client with
room for every task that claims 1-8 tasks per fetch as fast as it can, so the claimers meet
in the claim statement all the time; each reports every tenth task it took (the report path
runs alongside the claims too).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import asyncpg
import httpx
import pytest

from mitosis_sdk.client import AsyncClient
from mitosis_sdk.schemas import TaskQuery, TaskSpec, TaskState
from mitosis_server.services.tokens import generate_key_pair
from tests.conftest import ADMIN, PG_ADMIN_DSN, _pg_url, free_port

TASKS = 2000
CLAIMERS = 8
SERVER = str(Path(sys.executable).with_name("mitosis-server"))

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


async def _ready(url: str, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"mitosis-server exited with {process.returncode}")
            try:
                if (await http.get(f"{url}/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"mitosis-server at {url} did not become ready")


async def start_servers(db: str, data_dir: Path, count: int) -> list[tuple[str, subprocess.Popen]]:
    """Coordinators on free loopback ports, one after the other (the first one creates the
    admin), sharing the key pair under ``data_dir``."""
    keys = data_dir / "keys"
    generate_key_pair(keys / "jwt.pem", keys / "jwt.pub.pem")
    servers = []
    for _ in range(count):
        port = free_port()
        process = subprocess.Popen(
            [
                SERVER,
                "serve",
                "--db",
                db,
                "--data-dir",
                str(data_dir),
                "-b",
                f"127.0.0.1:{port}",
                "--password-hash-memory",
                "1MiB",
                "--log-level",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        servers.append((f"http://127.0.0.1:{port}", process))
        await _ready(servers[-1][0], process)
    return servers


def stop_servers(servers) -> None:
    for _, process in servers:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for _, process in servers:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


async def race(urls: list[str]) -> tuple[list[tuple[uuid.UUID, int, str]], set[uuid.UUID]]:
    """Submit TASKS tasks, let CLAIMERS claimers take them; (claims, submitted uuids)."""
    admin = AsyncClient(urls[0], timeout=60)
    await admin.login(*ADMIN)
    submitted: set[uuid.UUID] = set()
    for _ in range(TASKS // 1000):
        reply = await admin.submit_tasks([TaskSpec(command=["true"])] * 1000)
        submitted |= {item.task.uuid for item in reply.results}
    claims: list[tuple[uuid.UUID, int, str]] = []
    rng = random.Random(3)

    async def claimer(index: int) -> None:
        registered = await admin.register_worker(slots=1024)  # room for all 2,000 together
        worker = registered.worker.uuid
        async with AsyncClient(urls[index % len(urls)], registered.token, timeout=60) as client:
            deadline = time.monotonic() + 240
            while len(claims) < TASKS and time.monotonic() < deadline:
                reply = await client.fetch_tasks(worker, wait=1, max_tasks=rng.randint(1, 8))
                for task in reply.tasks:
                    claims.append((task.task, task.attempt, str(worker)))
                    if len(claims) % 10 == 0:
                        await client.report_result(worker, task.task, task.attempt, exit_code=0)

    await asyncio.wait_for(asyncio.gather(*(claimer(i) for i in range(CLAIMERS))), 270)
    totals = {}
    for state in (TaskState.READY, TaskState.RUNNING, TaskState.COMPLETED):
        totals[state] = (await admin.query_tasks(TaskQuery(states=[state], limit=1))).total
    assert totals[TaskState.READY] == 0
    assert totals[TaskState.RUNNING] + totals[TaskState.COMPLETED] == TASKS
    assert totals[TaskState.COMPLETED] == TASKS // 10
    await admin.aclose()
    return claims, submitted


def assert_claimed_exactly_once(claims, submitted) -> None:
    counts = Counter(task for task, _, _ in claims)
    assert {t: n for t, n in counts.items() if n != 1} == {}
    assert set(counts) == submitted
    assert {attempt for _, attempt, _ in claims} == {1}
    assert len({worker for _, _, worker in claims}) > 1  # the claimers really competed


async def test_two_postgresql_coordinators_dispatch_each_task_once(pg_template, tmp_path):
    """8 claimers over 2 coordinators sharing one PostgreSQL: 2,000 tasks, each once."""
    name = f"mito_race_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    servers = []
    try:
        servers = await start_servers(_pg_url(name), tmp_path / "data", 2)
        assert_claimed_exactly_once(*await race([url for url, _ in servers]))
    finally:
        stop_servers(servers)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_one_sqlite_coordinator_dispatches_each_task_once(tmp_path):
    """The same 8 claimers against the embedded SQLite coordinator."""
    servers = []
    try:
        servers = await start_servers(
            f"sqlite:///{tmp_path / 'race.sqlite3'}", tmp_path / "data", 1
        )
        assert_claimed_exactly_once(*await race([url for url, _ in servers]))
    finally:
        stop_servers(servers)
