"""Fixtures for end-to-end tests with real processes."""

from __future__ import annotations

import pytest

from tests.conftest import free_port
from tests.e2e.processes import Server


@pytest.fixture
def server(tmp_path):
    running = Server(tmp_path / "data", free_port(), tmp_path / "server.log")
    running.start()
    yield running
    if running.process and running.process.poll() is None:
        running.process.kill()
        running.process.wait(timeout=10)
