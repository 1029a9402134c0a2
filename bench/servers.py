"""Start and stop real ``mitosis-server`` processes on loopback ports for the benchmarks."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx

from mitosis_server.services.tokens import generate_key_pair

SERVER = str(Path(sys.executable).with_name("mitosis-server"))
# url → pid of every coordinator ``coordinators`` started, for CPU accounting (psutil).
PIDS: dict[str, int] = {}
PG_ADMIN = os.environ.get("MITO_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _ready(url: str, process: asyncio.subprocess.Process, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise RuntimeError(f"mitosis-server exited with {process.returncode}")
            try:
                if (await http.get(f"{url}/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"mitosis-server at {url} did not become ready")


@asynccontextmanager
async def fresh_database(backend: str, workdir: Path):
    """A new empty database URL (PostgreSQL database or SQLite file), dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'bench.sqlite3'}"
        return
    name = f"mito_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@asynccontextmanager
async def coordinators(db: str, workdir: Path, count: int = 1, *extra: str):
    """``count`` coordinators over ``db`` sharing one key pair; yields their URLs."""
    data = workdir / "data"
    generate_key_pair(data / "keys" / "jwt.pem", data / "keys" / "jwt.pub.pem")
    processes: list[asyncio.subprocess.Process] = []
    urls = []
    try:
        for _ in range(count):
            port = free_port()
            process = await asyncio.create_subprocess_exec(
                SERVER,
                "serve",
                "--db",
                db,
                "--data-dir",
                str(data),
                "-b",
                f"127.0.0.1:{port}",
                "--log-level",
                "warning",
                *extra,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            processes.append(process)
            urls.append(f"http://127.0.0.1:{port}")
            PIDS[urls[-1]] = process.pid
            await _ready(urls[-1], process)
        yield urls
    finally:
        for process in processes:
            if process.returncode is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                os.killpg(process.pid, signal.SIGKILL)
                await asyncio.wait_for(process.wait(), 5)
