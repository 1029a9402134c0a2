"""How the SDK meets a stream the coordinator cannot serve (issue 7, item 6)."""

from __future__ import annotations

import pytest

from mitosis_sdk import errors
from mitosis_sdk.client import streams
from mitosis_server.events import EventBusUnavailable


async def test_an_unavailable_bus_is_retried_then_reported(app, make_user, monkeypatch):
    """503 (the bus is down) is retried a few times, then raised as ConnectionFailed."""
    alice = await make_user("alice")
    calls = []

    async def unavailable():
        calls.append(1)
        raise EventBusUnavailable()

    monkeypatch.setattr(app.state.coordinator.events, "latest_cursor", unavailable)
    monkeypatch.setattr(streams, "RETRY_PAUSE", 0.0)
    with pytest.raises(errors.ConnectionFailed, match="event bus is unreachable"):
        async for _ in alice.events():
            pass
    assert len(calls) == streams.RECONNECTS + 1


async def test_a_malformed_cursor_is_a_400_not_a_retry(make_user):
    alice = await make_user("alice")
    with pytest.raises(errors.BadRequest, match="cursor"):
        async for _ in alice.events(cursor="nonsense"):
            pass
