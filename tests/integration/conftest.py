"""Fixtures shared by the integration tests: a real S3 endpoint (see ``s3gate``)."""

from __future__ import annotations

import pytest

from tests.integration.s3gate import Clock, start_moto


@pytest.fixture(scope="session")
def s3_clock() -> Clock:
    return Clock()


@pytest.fixture(scope="session")
def moto_url(s3_clock) -> str:
    """A moto S3 server that checks presigned URLs as S3 does, for this test process."""
    server, url = start_moto(s3_clock)
    yield url
    server.stop()
