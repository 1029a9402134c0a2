"""The Logs view: live lines from a real worker, the end marker, the archived std-log, and
the view's own behaviour (follow, wrap, timestamps, search, save, bounded memory)."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets import Input

from mitosis_sdk.archives import pack_directory
from mitosis_sdk.schemas import Role, TaskState
from mitosis_tui.screens.logs import LogsScreen, SaveLogForm
from mitosis_tui.widgets.log_view import MAX_LINES, LogEntry, LogView
from tests.integration.server.fleet import start_worker
from tests.tui.conftest import screen_text, until, until_row
from tests.tui.test_tasks_pane import submit


async def open_logs(pilot, pane, task) -> LogsScreen:
    await until(pilot, lambda: pane.window.locate(task) is not None, what="the row")
    pane.table.move_cursor(pane.window.locate(task))
    await pilot.press("l")
    await until(pilot, lambda: isinstance(pilot.app.screen, LogsScreen), what="logs")
    return pilot.app.screen


def texts(view: LogView, stream: str | None = None) -> list[str]:
    return [e.text for e in view.entries if stream is None or e.stream == stream]


async def test_live_lines_arrive_while_the_task_runs_then_the_end_marker(
    alice_tasks, real_worker, lab, tmp_path
):
    """stdout and stderr lines appear as the worker ships them, each stream marked, while
    the task still runs; when it ends the view says the live stream ended."""
    go_on = tmp_path / "go-on"  # the task waits for it after its first lines
    script = (
        "for i in 1 2 3; do echo out $i; echo err $i >&2; done; "
        f"while [ ! -e {go_on} ]; do sleep 0.1; done; "
        "for i in 4 5; do echo out $i; echo err $i >&2; done"
    )
    task = await submit(lab, "sh", "-c", script, group="lab")
    async with alice_tasks() as (pilot, pane):
        await until_row(pilot, pane, lambda t: t.state == TaskState.RUNNING, what="running")
        screen = await open_logs(pilot, pane, task)
        view = screen.view
        await until(pilot, lambda: "err 3" in texts(view), what="the first lines", timeout=20)
        assert not screen.ended
        assert "── live stream ended ──" not in texts(view)
        go_on.touch()
        await until(pilot, lambda: "── live stream ended ──" in texts(view), timeout=30)
        assert texts(view, "stdout") == [f"out {i}" for i in range(1, 6)]
        assert texts(view, "stderr") == [f"err {i}" for i in range(1, 6)]
        await until(pilot, lambda: screen.ended, what="the task's end read")
        assert all(e.at is not None for e in view.entries if e.stream != "marker")


async def test_an_ended_task_without_live_lines_shows_its_archived_std_log(
    alice_tasks, lab, transport, tmp_path
):
    """No live line kept: the std-log artifact is read instead, stdout then stderr."""
    worker = await start_worker(lab, transport, groups={"lab": Role.WRITE})
    task = await submit(lab, "true", group="lab", terminal_output=True)
    held = await worker.fetch_one()
    folder = tmp_path / "std-log"
    folder.mkdir()
    (folder / "stdout.log").write_text("archived out\n")
    (folder / "stderr.log").write_text("archived err\n")
    pack_directory(folder, tmp_path / "std-log.tar.gz", "std-log")
    await worker.client.upload_attempt_artifact(
        worker.uuid, held.task, held.attempt, "std-log", tmp_path / "std-log.tar.gz"
    )
    await worker.finish(held)
    async with alice_tasks() as (pilot, pane):
        screen = await open_logs(pilot, pane, task)
        view = screen.view
        await until(pilot, lambda: "archived err" in texts(view), what="the archive")
        assert texts(view) == [
            "── live stream ended ──",
            "── archived std-log ──",
            "archived out",
            "archived err",
            "── end of the archived std-log ──",
        ]
        assert [e.stream for e in view.entries][2:4] == ["stdout", "stderr"]


async def test_search_finds_lines_and_save_writes_them(alice_tasks, lab, transport, tmp_path):
    """/ finds the next matching line from the top of the view, n and N move between
    matches; s saves the kept lines to a file."""
    worker = await start_worker(lab, transport, groups={"lab": Role.WRITE})
    task = await submit(lab, "true", group="lab")
    held = await worker.fetch_one()
    lines = [("stdout", f"step {n}") for n in range(50)] + [("stderr", "boom at step 42")]
    await worker.client.ship_logs(worker.uuid, held.task, held.attempt, lines, first_line=1)
    await worker.finish(held, exit_code=1)
    async with alice_tasks() as (pilot, pane):
        app = pilot.app
        screen = await open_logs(pilot, pane, task)
        view = screen.view
        await until(pilot, lambda: "── live stream ended ──" in texts(view), what="all lines")
        await until(pilot, lambda: "51 lines" in screen_text(app), what="the count, no marker")
        await until(pilot, lambda: view.scroll_y == view.max_scroll_y > 0, what="at the end")
        await pilot.press("home")  # to the top: following stops
        await until(pilot, lambda: view.scroll_y == 0, what="at the top")
        assert not view.follow
        await pilot.press("slash", *"step 4", "enter")
        assert view.match == 4
        await pilot.press("n")
        assert view.match == 40
        await pilot.press("N")
        assert view.match == 4
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, SaveLogForm), what="save form")
        path = tmp_path / "saved.log"
        app.screen.query_one("#log-path", Input).value = str(path)
        await pilot.press("enter")
        await until(pilot, path.exists, what="the file")
    saved = path.read_text().splitlines()
    assert saved[:2] == ["step 0", "step 1"]
    assert "boom at step 42" in saved


class LogHarness(App):
    def compose(self) -> ComposeResult:
        yield LogView(id="log-view")


async def test_scrolling_up_pauses_follow_and_end_resumes_it():
    """New lines keep the end in view until the user scrolls up; End follows again."""
    app = LogHarness()
    async with app.run_test(size=(60, 12)) as pilot:
        view = app.query_one(LogView)
        view.focus()
        view.append([LogEntry("stdout", f"line {n}") for n in range(100)])
        await pilot.pause()
        assert view.scroll_y == view.max_scroll_y
        await pilot.press("up")
        assert not view.follow
        view.append([LogEntry("stdout", "more")])
        await pilot.pause()
        assert view.scroll_y < view.max_scroll_y
        await pilot.press("end")
        await pilot.pause()
        assert view.follow
        assert view.scroll_y == view.max_scroll_y


async def test_wrap_cuts_long_lines_into_rows_and_timestamps_take_a_column():
    """With wrap on a 130-cell line takes three rows of a 60-wide view."""
    app = LogHarness()
    async with app.run_test(size=(60, 12)) as pilot:
        view = app.query_one(LogView)
        view.append([LogEntry("stdout", "x" * 130, at=0.0), LogEntry("stderr", "short")])
        await pilot.pause()
        assert view.virtual_size.height == 2
        view.set_wrap(True)
        await pilot.pause()
        assert view.virtual_size.height == 4  # 130 cells in rows of 58, then one row
        view.set_timestamps(True)
        await pilot.pause()
        assert view.virtual_size.height == 4  # rows of 49 cells now: 3, then 1
        first, second = view.lines()
        assert first[:9].count(":") == 2  # HH:MM:SS, then the text
        assert first.endswith("x")
        assert second == " " * 9 + "short"  # no time known: the column stays


async def test_memory_stays_bounded_and_drops_are_counted():
    """More than MAX_LINES lines: the oldest go, and the view says how many."""
    app = LogHarness()
    async with app.run_test(size=(60, 12)) as pilot:
        view = app.query_one(LogView)
        view.set_wrap(True)
        view.append([LogEntry("marker", "a marker, then the output")])
        view.append([LogEntry("stdout", str(n)) for n in range(MAX_LINES + 24)])
        await pilot.pause()
        assert len(view.entries) == MAX_LINES
        assert view.dropped == 25
        assert view.output_lines == MAX_LINES  # the marker went first
        assert view.entries[0].text == "24"
        assert view.virtual_size.height == MAX_LINES
