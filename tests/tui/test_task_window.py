"""TaskWindow: which pages the viewport needs, cursor paging, patches, bounded memory."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from mitosis_sdk.schemas import TaskInfo, TaskPage, TaskState
from mitosis_tui.task_window import CHUNK, KEEP, TaskWindow

NOW = datetime(2030, 1, 2, tzinfo=UTC)


def task(seq: int, state: TaskState = TaskState.READY) -> TaskInfo:
    return TaskInfo(
        uuid=uuid.UUID(int=seq + 1),
        group="lab",
        seq=seq,
        creator="alice",
        state=state,
        command=["true"],
        tags=[],
        labels=[],
        priority=0,
        timeout=600,
        terminal_output=False,
        created_at=NOW,
        attempt=0,
        max_attempts=3,
        retries=0,
    )


def page(first: int, total: int, cursor: str | None = "next") -> TaskPage:
    rows = [task(n) for n in range(first, min(first + CHUNK, total))]
    return TaskPage(tasks=rows, total=total, next_cursor=cursor)


def test_before_the_first_page_the_first_chunk_is_wanted():
    """Nothing is counted yet: read the chunk of the first visible row."""
    assert TaskWindow().wanted(0, 20) == [0]


def test_visible_chunks_come_first_then_the_neighbours():
    """Rows 150-260 of 1,000 need chunks 1 and 2, then 3, 0 and 4 ahead."""
    window = TaskWindow()
    window.store(5, page(500, 1000), window.generation)
    assert window.wanted(150, 260) == [1, 2, 3, 0, 4]


def test_a_chunk_after_a_fresh_one_is_read_with_its_cursor():
    """Keyset paging continues from the chunk before; a jump uses the offset."""
    window = TaskWindow()
    window.store(0, page(0, 1000, cursor="c1"), window.generation)
    assert window.page_request(1) == {
        "cursor": "c1",
        "offset": 0,
        "limit": CHUNK,
        "reverse": False,
    }
    assert window.page_request(3) == {
        "cursor": None,
        "offset": 3 * CHUNK,
        "limit": CHUNK,
        "reverse": False,
    }
    window.mark_stale()
    assert window.page_request(1)["cursor"] is None  # a stale cursor may skip rows


def test_the_far_half_is_read_from_the_other_end():
    """Chunk 9 of 950 rows: the first 50 rows of the reversed query, stored turned round."""
    window = TaskWindow()
    window.store(0, page(0, 950), window.generation)
    request = window.page_request(9)
    assert request == {"cursor": None, "offset": 0, "limit": 50, "reverse": True}
    reversed_rows = TaskPage(tasks=[task(n) for n in range(949, 899, -1)], total=950)
    window.store(9, reversed_rows, window.generation, reverse=True)
    assert [window.row(i).seq for i in (900, 949)] == [900, 949]
    assert window.page_request(10)["cursor"] is None  # its cursor runs the other way


def test_pages_of_an_older_query_are_dropped():
    """After reset, a late page of the previous query is not kept."""
    window = TaskWindow()
    old = window.generation
    window.reset()
    assert not window.store(0, page(0, 10), old)
    assert window.total is None


def test_an_event_patches_the_held_row():
    """state, exit code and worker from an event's payload change the row in place."""
    window = TaskWindow()
    window.store(0, page(0, 10), window.generation)
    worker = uuid.uuid4()
    index = window.patch(
        uuid.UUID(int=4), {"state": "failed", "exit_code": 3, "worker": str(worker)}
    )
    assert index == 3
    row = window.row(3)
    assert (row.state, row.exit_code, row.worker) == (TaskState.FAILED, 3, worker)
    assert window.patch(uuid.uuid4(), {"state": "failed"}) is None


def test_stale_chunks_are_read_again_and_keep_their_rows_meanwhile():
    """mark_stale: the visible chunk is wanted again, and still shows its rows."""
    window = TaskWindow()
    window.store(0, page(0, 50), window.generation)
    window.mark_stale()
    assert window.wanted(0, 20) == [0]
    assert window.row(0) is not None


def test_an_empty_result_is_counted_again_after_mark_stale():
    """A query with no rows is still re-read when events arrive (a task may now match)."""
    window = TaskWindow()
    window.store(0, TaskPage(tasks=[], total=0), window.generation)
    assert window.wanted(0, 20) == []
    window.mark_stale()
    assert window.wanted(0, 20) == [0]


def test_at_most_keep_chunks_are_held_nearest_first():
    """Scrolling through 100,000 rows keeps KEEP chunks around the last one read."""
    window = TaskWindow()
    for number in range(40):
        window.store(number, page(number * CHUNK, 100_000), window.generation)
    assert window.held_rows == KEEP * CHUNK
    assert window.row(39 * CHUNK) is not None
    assert window.row(0) is None
    assert window.locate(uuid.UUID(int=39 * CHUNK + 1)) == 39 * CHUNK


def test_a_smaller_total_drops_chunks_past_the_end():
    """Tasks left the query: chunks beyond the new total go."""
    window = TaskWindow()
    window.store(3, page(300, 1000), window.generation)
    window.store(0, page(0, 150), window.generation)
    assert window.row(300) is None
    assert window.total == 150
