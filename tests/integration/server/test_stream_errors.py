"""How the SDK meets a stream the coordinator cannot serve (issue 7, item 6, and its bad
input: unusable cursors)."""

from __future__ import annotations

import msgspec
import pytest

from mitosis_sdk import errors
from mitosis_sdk.client import streams
from mitosis_server.events import EventBusUnavailable
from tests.integration.server.fleet import spec, start_worker

EVENT_HISTORY, LOG_HISTORY = 5, 10


@pytest.fixture
def settings(settings, db_url):
    """Short histories, so a cursor falls out of what is kept after a few events or lines.
    (``db_url`` is named so that pytest still runs these tests on both databases.)"""
    return msgspec.structs.replace(settings, event_history=EVENT_HISTORY, log_history=LOG_HISTORY)


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


async def test_an_event_cursor_older_than_the_kept_events_is_a_400(app, make_user):
    """A stream resumed after more events than are kept were published is refused before
    anything is streamed, saying how to go on (the client restarts without a cursor)."""
    alice = await make_user("alice")
    await alice.submit_task(spec("true"))
    expired = await app.state.coordinator.events.latest_cursor()
    await alice.submit_tasks([spec("true")] * (EVENT_HISTORY + 1))
    with pytest.raises(errors.BadRequest, match=r"older than the oldest kept.*no cursor"):
        async for _ in alice.events(cursor=expired):
            pass


async def test_a_log_cursor_older_than_the_kept_lines_is_a_400(make_user, transport):
    """A log resumed after a line that was already dropped for newer ones is refused."""
    alice = await make_user("alice")
    worker = await start_worker(alice, transport)
    task = await alice.submit_task(spec("true"))
    held = await worker.fetch_one()
    for first in range(1, 3 * LOG_HISTORY, LOG_HISTORY):
        lines = [("stdout", str(n)) for n in range(first, first + LOG_HISTORY)]
        await worker.client.ship_logs(worker.uuid, held.task, held.attempt, lines, first_line=first)
    with pytest.raises(errors.BadRequest, match="older than the oldest kept"):
        async for _ in alice.follow_logs(task.uuid, follow=False, cursor=f"{held.attempt}-1"):
            pass
