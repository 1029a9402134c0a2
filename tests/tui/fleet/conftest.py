"""Fixtures for the fleet panes' tests: a served coordinator with real `mitosis-worker`
processes, and helpers to read tables and pin the data snapshots show.

Workers need a coordinator on a TCP port (they are other processes), so these tests serve
the real app with uvicorn on loopback; the TUI reaches it under the stable test URL. Every
process started here is stopped here.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from mitosis_sdk.auth import CredentialCache
from mitosis_sdk.client import AsyncClient
from mitosis_tui.app import MitosisApp
from tests.e2e.processes import start_worker, stop_process
from tests.tui.conftest import URL, ServedCoordinator, serve

WORKER_OPTIONS = ("--heartbeat-interval", "0.5s", "--poll-wait", "2s", "--shutdown-grace", "30s")


@pytest.fixture
def served_lab(tmp_path, sqlite_template) -> Iterator[ServedCoordinator]:
    """A coordinator of this test's own, served on loopback, seeded with lab (alice admins
    it, bob reads, carol writes). Tests that build their own data use the plain ``served``
    (through ``make_user``) instead."""
    coordinator = serve(tmp_path, sqlite_template)
    yield coordinator
    coordinator.stop()


class Workers:
    """Starts `mitosis-worker` processes against a served coordinator; stops them all."""

    def __init__(self, served: ServedCoordinator, base: Path) -> None:
        self.served, self.base = served, base
        self.processes: list[subprocess.Popen] = []

    def start(self, *options: str, user: str = "alice") -> subprocess.Popen:
        number = len(self.processes)
        process = start_worker(
            self.served,
            self.base / f"home-{number}",
            self.base / f"worker-{number}.log",
            "-u",
            user,
            "-p",
            "pw",
            *WORKER_OPTIONS,
            *options,
        )
        self.processes.append(process)
        return process

    def log(self, number: int = 0) -> str:
        return (self.base / f"worker-{number}.log").read_text()

    def stop_all(self) -> None:
        for process in self.processes:
            stop_process(process)


@pytest.fixture
def worker_processes(served_lab, tmp_path) -> Iterator[Workers]:
    workers = Workers(served_lab, tmp_path)
    try:
        yield workers
    finally:
        workers.stop_all()


async def tui_for(
    served: ServedCoordinator, tmp_path: Path, user: str, password: str = "pw", **kwargs
) -> MitosisApp:
    """The app with a cached token for ``user`` on the served coordinator."""
    cache = CredentialCache(tmp_path / f"credentials-{user}.json")
    async with AsyncClient(URL, transport=served.transport()) as client:
        reply = await client.login(user, password)
    cache.put(URL, reply.username, reply.token, reply.expires_at)
    return MitosisApp(URL, cache=cache, transport=served.transport(), **kwargs)


def pin_rows(database: Path, table: str, where: str, **values: object) -> None:
    """Set columns of existing rows straight in the SQLite file, so what a snapshot shows
    (ids, times) is the same on every run. Times are UTC, stored as the app stores them."""
    stored = {
        column: value.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(value, datetime) else value
        for column, value in values.items()
    }
    assignments = ", ".join(f"{column} = ?" for column in stored)
    with contextlib.closing(sqlite3.connect(database)) as connection, connection:
        connection.execute(f"UPDATE {table} SET {assignments} WHERE {where}", list(stored.values()))
