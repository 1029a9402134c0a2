"""Real Mitosis processes for end-to-end tests: coordinators and workers on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


class Server:
    def __init__(self, data_dir: Path, port: int, log: Path, *extra: str) -> None:
        self.data_dir, self.port, self.log, self.extra = data_dir, port, log, extra
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                str(BIN / "mitosis-server"),
                "--data-dir",
                str(self.data_dir),
                "-b",
                f"127.0.0.1:{self.port}",
                "--password-hash-memory",
                "1MiB",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("a"),
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, self.log.read_text()
            time.sleep(0.1)
        raise AssertionError("mitosis-server did not become ready:\n" + self.log.read_text())

    def stop(self) -> None:
        """SIGTERM, then expect a graceful exit (uvicorn re-raises the signal when done)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        self.assert_stopped_gracefully()

    def assert_stopped_gracefully(self) -> None:
        assert self.process.wait(timeout=30) in (0, -signal.SIGTERM)
        log = self.log.read_text()
        assert log.count("coordinator.stopped") == log.count("coordinator.started"), log


def start_worker(server: Server, home: Path, log: Path, *options: str) -> subprocess.Popen:
    """A real `mitosis-worker` process logged in through the credential cache in ``home``."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(home), "XDG_CACHE_HOME": str(home / "cache")}
    return subprocess.Popen(
        [str(BIN / "mitosis-worker"), "-c", server.url, *options],
        stdout=subprocess.DEVNULL,
        stderr=log.open("a"),
        env=env,
    )


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(timeout=10)
