"""The worker's log shipper never raises into the executor (issue 7)."""

from __future__ import annotations

from mitosis_sdk.schemas.events import MAX_LOG_BATCH
from mitosis_worker.logs import LogLine
from mitosis_worker.logship import MAX_FAILURES, log_shipper


class FakeClient:
    def __init__(self, fail: bool = False) -> None:
        self.fail, self.calls = fail, []

    async def ship_logs(self, worker, task, attempt, lines, *, first_line) -> None:
        self.calls.append((worker, task, attempt, [(x.stream, x.text) for x in lines], first_line))
        if self.fail:
            raise ConnectionError("coordinator down")


async def test_batches_are_split_to_what_the_coordinator_accepts():
    """A large batch goes out in pieces of at most MAX_LOG_BATCH lines, in order."""
    client = FakeClient()
    sink = log_shipper(client, "w", "t", 2)
    await sink([LogLine("stdout", str(n)) for n in range(MAX_LOG_BATCH + 5)])
    sizes = [len(call[3]) for call in client.calls]
    assert sizes == [MAX_LOG_BATCH, 5]
    assert client.calls[1][3][-1] == ("stdout", str(MAX_LOG_BATCH + 4))
    assert client.calls[0][:3] == ("w", "t", 2)
    assert [call[4] for call in client.calls] == [1, MAX_LOG_BATCH + 1]  # lines numbered


async def test_lines_are_numbered_across_batches_even_when_one_is_lost():
    """Each batch starts at the line after the previous one, shipped or not."""
    client = FakeClient()
    sink = log_shipper(client, "w", "t", 1)
    await sink([LogLine("stdout", "a"), LogLine("stdout", "b")])
    client.fail = True
    await sink([LogLine("stdout", "c")])
    client.fail = False
    await sink([LogLine("stdout", "d")])
    assert [(call[3], call[4]) for call in client.calls] == [
        ([("stdout", "a"), ("stdout", "b")], 1),
        ([("stdout", "c")], 3),
        ([("stdout", "d")], 4),
    ]


async def test_failures_are_dropped_and_the_shipper_gives_up_after_a_few():
    """Errors never reach the caller; after MAX_FAILURES in a row nothing more is sent."""
    client = FakeClient(fail=True)
    sink = log_shipper(client, "w", "t", 1)
    for _ in range(MAX_FAILURES + 3):
        await sink([LogLine("stderr", "x")])
    assert len(client.calls) == MAX_FAILURES
