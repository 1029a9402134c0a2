"""Files benchmark: one large artifact up and down, through S3 presigned URLs and through the
local object store, with the coordinator's memory and CPU watched from outside.

    .venv/bin/python -m bench.files                      # 1 GiB: S3, local, and the sink
    .venv/bin/python -m bench.files --size 256MiB --backends local --json

Real processes on loopback only: ``moto_server`` plays S3 (a separate process, so its memory
is not counted as ours), ``mitosis-server serve`` is the coordinator (embedded SQLite), and
this process is the client, using the SDK's transfer helpers exactly as the batch commands
and the worker do (64 MiB parts, 4 at a time, above the 256 MiB multipart threshold). While
each transfer runs, the coordinator process is sampled with psutil every 50 ms: resident
memory (peak) and CPU (average, in percent of one core).

What to expect: with S3 the coordinator only signs URLs and completes the upload, so its RSS
stays flat and its CPU near zero while bytes flow; with the local store it streams every byte
to or from disk itself, so the numbers measure its throughput. The ``sink`` backend is the
ceiling on this machine: a bare uvicorn app (``bench/sink.py``) that only writes and fsyncs
what it receives and streams it back, sent the same parts by the same client code. Every
process started here is stopped by pid before the benchmark returns.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import psutil

from mitosis_sdk.client import AsyncClient
from mitosis_sdk.schemas import ArtifactType, MultipartPlan, PartUpload, TaskSpec, Upload
from mitosis_sdk.transfers import get_file, put_file
from mitosis_sdk.units import format_size, parse_size

BIN = Path(sys.executable).parent
ADMIN = ("mitosis_admin", "mitosis_admin")
S3_KEYS = ("bench-access", "bench-secret")
RSS_LIMIT = 150 * 2**20
START_TIMEOUT = 60.0


@dataclass
class Transfer:
    seconds: float
    mb_per_s: float  # 10^6 bytes per second, as disks and networks are quoted
    coordinator_peak_rss_mb: float
    coordinator_cpu_percent: float
    client_cpu_percent: float  # this process: the SDK's transfer helpers


@dataclass
class Result:
    backend: str
    size: int
    coordinator_idle_rss_mb: float
    upload: Transfer
    download: Transfer
    verified: bool

    @property
    def rss_ok(self) -> bool:
        peak = max(self.upload.coordinator_peak_rss_mb, self.download.coordinator_peak_rss_mb)
        return peak * 2**20 < RSS_LIMIT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_until_up(url: str, process: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise RuntimeError(f"pid {process.pid} exited with status {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                await http.get(url)
                return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {START_TIMEOUT:.0f}s")


async def stop(process: asyncio.subprocess.Process) -> None:
    """Stop one process we started, by its pid: SIGTERM, then SIGKILL after 10 s."""
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await asyncio.wait_for(process.wait(), 10)


class Sampler:
    """Samples one process's RSS and CPU time while a transfer runs."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak_rss = 0
        self._task: asyncio.Task | None = None

    def rss(self) -> int:
        return self.process.memory_info().rss

    async def _run(self) -> None:
        while True:
            self.peak_rss = max(self.peak_rss, self.rss())
            await asyncio.sleep(0.05)

    @contextlib.asynccontextmanager
    async def watch(self):
        self.peak_rss = self.rss()
        cpu = self.process.cpu_times()
        client = time.process_time()
        started = time.monotonic()
        self._task = asyncio.create_task(self._run())
        measured: dict = {}
        try:
            yield measured
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            elapsed = time.monotonic() - started
            after = self.process.cpu_times()
            used = (after.user - cpu.user) + (after.system - cpu.system)
            mine = time.process_time() - client
            measured.update(
                seconds=elapsed,
                cpu=100 * used / elapsed if elapsed else 0.0,
                client_cpu=100 * mine / elapsed if elapsed else 0.0,
            )
            self.peak_rss = max(self.peak_rss, self.rss())


def make_file(path: Path, size: int) -> None:
    block = os.urandom(16 * 2**20)
    with path.open("wb") as file:
        left = size
        while left:
            written = file.write(block[: min(len(block), left)])
            left -= written


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(4 * 2**20):
            digest.update(chunk)
    return digest.hexdigest()


def _transfer(size: int, measured: dict, sampler: Sampler) -> Transfer:
    return Transfer(
        seconds=round(measured["seconds"], 2),
        mb_per_s=round(size / measured["seconds"] / 1e6, 1),
        coordinator_peak_rss_mb=round(sampler.peak_rss / 2**20, 1),
        coordinator_cpu_percent=round(measured["cpu"], 1),
        client_cpu_percent=round(measured["client_cpu"], 1),
    )


PART_SIZE = 64 * 2**20  # the coordinator's default part size, for the sink's plan


async def _sink_transfers(url: str, size: int, source: Path, target: Path, sampler: Sampler):
    """The same parts, four at a time, to the bare sink; then all of it back in one GET."""
    parts = [
        PartUpload(
            number=n + 1,
            offset=offset,
            size=min(PART_SIZE, size - offset),
            url=f"{url}/part{n + 1}",
            headers={"Content-Length": str(min(PART_SIZE, size - offset))},
        )
        for n, offset in enumerate(range(0, size, PART_SIZE))
    ]
    plan = Upload(expires_at=0, multipart=MultipartPlan("sink", PART_SIZE, parts))
    async with httpx.AsyncClient(timeout=600) as http:
        async with sampler.watch() as measured:
            await put_file(http, plan, source)
        upload = _transfer(size, measured, sampler)
        names = ",".join(f"part{part.number}" for part in parts)
        async with sampler.watch() as measured:
            await get_file(http, f"{url}/{names}", target, size=size)
        download = _transfer(size, measured, sampler)
    return upload, download


async def run_backend(backend: str, size: int, work: Path, verify: bool) -> Result:
    processes: list[asyncio.subprocess.Process] = []
    try:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        command = [
            str(BIN / "mitosis-server"),
            "serve",
            "--data-dir",
            str(work / f"data-{backend}"),
            "-b",
            f"127.0.0.1:{port}",
            "--password-hash-memory",
            "1MiB",
            "--log-level",
            "warning",
        ]
        if backend == "s3":
            s3_port = free_port()
            moto = await asyncio.create_subprocess_exec(
                str(BIN / "moto_server"),
                *("-H", "127.0.0.1", "-p", str(s3_port)),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            processes.append(moto)
            await wait_until_up(f"http://127.0.0.1:{s3_port}/", moto)
            command += [
                "--s3-url",
                f"http://127.0.0.1:{s3_port}",
                "--s3-access-key",
                S3_KEYS[0],
                "--s3-secret-key",
                S3_KEYS[1],
            ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MITO_")}
        if backend == "sink":
            sink_dir = work / "sink"
            sink_dir.mkdir(exist_ok=True)
            env["SINK_DIR"] = str(sink_dir)
            command = [str(BIN / "uvicorn"), "bench.sink:app", "--port", str(port)]
            command += ["--host", "127.0.0.1", "--no-access-log", "--log-level", "warning"]
        coordinator = await asyncio.create_subprocess_exec(
            *command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        processes.append(coordinator)
        await wait_until_up(f"{url}/health", coordinator)
        sampler = Sampler(coordinator.pid)
        source = work / "source.bin"
        if not source.exists() or source.stat().st_size != size:
            make_file(source, size)
        target = work / f"copy-{backend}.bin"
        if backend == "sink":
            idle = sampler.rss()
            upload, download = await _sink_transfers(url, size, source, target, sampler)
            verified = (not verify) or sha256(source) == sha256(target)
            target.unlink()
            return Result(backend, size, round(idle / 2**20, 1), upload, download, verified)
        async with AsyncClient(url, timeout=600) as mito:
            await mito.login(*ADMIN)
            task = await mito.submit_task(TaskSpec(command=["true"]))
            idle = sampler.rss()
            async with sampler.watch() as measured:
                await mito.upload_artifact(task.uuid, ArtifactType.RESULT, source)
            upload = _transfer(size, measured, sampler)
            async with sampler.watch() as measured:
                await mito.download_artifact(task.uuid, ArtifactType.RESULT, target)
            download = _transfer(size, measured, sampler)
        verified = (not verify) or sha256(source) == sha256(target)
        target.unlink()
        return Result(
            backend=backend,
            size=size,
            coordinator_idle_rss_mb=round(idle / 2**20, 1),
            upload=upload,
            download=download,
            verified=verified,
        )
    finally:
        for process in reversed(processes):
            await stop(process)


def markdown(results: list[Result]) -> str:
    lines = [
        "| backend | size | direction | time | throughput | coordinator peak RSS"
        " | coordinator CPU | client CPU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for name, t in (("upload", r.upload), ("download", r.download)):
            lines.append(
                f"| {r.backend} | {format_size(r.size)} | {name} | {t.seconds:.1f} s |"
                f" {t.mb_per_s:.0f} MB/s | {t.coordinator_peak_rss_mb:.0f} MiB |"
                f" {t.coordinator_cpu_percent:.0f}% | {t.client_cpu_percent:.0f}% |"
            )
    lines.append(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    for r in results:
        lines.append(
            f"\n{r.backend}: idle RSS {r.coordinator_idle_rss_mb:.0f} MiB; peak under 150 MB:"
            f" {'yes' if r.rss_ok else 'NO'}; bytes verified (SHA-256): {r.verified}"
        )
    return "\n".join(lines)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.files", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--size", default="1GiB", help="file size (default 1GiB)")
    parser.add_argument(
        "--backends", default="s3,local,sink", help="any of s3, local, sink (default: all)"
    )
    parser.add_argument("--no-verify", action="store_true", help="skip the SHA-256 comparison")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    size = parse_size(args.size)
    work = Path(tempfile.mkdtemp(prefix="mitosis-bench-files-"))
    try:
        results = [
            await run_backend(backend.strip(), size, work, not args.no_verify)
            for backend in args.backends.split(",")
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps([asdict(r) | {"rss_ok": r.rss_ok} for r in results], indent=2))
    else:
        print(markdown(results))
    return 0 if all(r.rss_ok and r.verified for r in results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
