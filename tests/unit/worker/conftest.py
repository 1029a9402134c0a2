"""Helpers for worker tests: a collecting log sink and checks on process groups."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

import psutil
import pytest

from mitosis_worker.executor import Attempt, AttemptSpec
from mitosis_worker.logs import LogLine

PY = sys.executable


class Collector:
    """A log sink that keeps every line and lets a test wait for one."""

    def __init__(self, delay: float = 0.0) -> None:
        self.lines: list[LogLine] = []
        self.batches = 0
        self.delay = delay
        self._changed = asyncio.Event()

    async def __call__(self, batch: list[LogLine]) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.lines.extend(batch)
        self.batches += 1
        self._changed.set()

    def texts(self, stream: str = "stdout") -> list[str]:
        return [line.text for line in self.lines if line.stream == stream]

    async def wait_for(self, prefix: str, within: float = 10.0) -> str:
        async with asyncio.timeout(within):
            while True:
                for line in self.lines:
                    if line.text.startswith(prefix):
                        return line.text
                self._changed.clear()
                await self._changed.wait()


def live_members(pgid: int) -> list[int]:
    """Pids of the group that are not zombies."""
    members = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == pgid and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                members.append(pid)
        except (OSError, psutil.Error):
            continue
    return members


def is_running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.fixture
def make_attempt(tmp_path: Path):
    """``make_attempt(command, **spec_fields)``; kills leftover groups after the test."""
    made: list[Attempt] = []

    def _make(
        command, *, sink=None, on_phase=None, grace=0.5, limits=None, base_env=None, **fields
    ):
        fields.setdefault("task_uuid", f"task-{len(made)}")
        fields.setdefault("attempt", 1)
        spec = AttemptSpec(command=command, **fields)
        attempt = Attempt(
            spec,
            tmp_path / "work",
            log_sink=sink,
            on_phase=on_phase,
            grace=grace,
            log_limits=limits,
            base_env=base_env,
        )
        made.append(attempt)
        return attempt

    yield _make
    for attempt in made:
        if attempt.pid is not None:
            for pid in live_members(attempt.pid):
                with contextlib.suppress(psutil.Error):
                    psutil.Process(pid).kill()
