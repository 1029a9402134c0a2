"""The Tasks pane against a real coordinator (and, where tasks must run, a real worker):
submit, live states, filters, sort, selection, cancel, re-run, labels, copy, paging."""

from __future__ import annotations

import tarfile

from textual.widgets import Checkbox, Input, Select

from mitosis_sdk.schemas import Dependency, TaskSpec, TaskState
from mitosis_tui.screens.confirm import ConfirmScreen
from mitosis_tui.screens.login import LoginScreen
from mitosis_tui.screens.task_forms import LabelsForm, SubmitForm
from mitosis_tui.task_window import CHUNK, KEEP
from mitosis_tui.widgets.task_columns import GAP, MARK_WIDTH
from mitosis_tui.widgets.tasks_pane import TasksPane
from tests.tui.conftest import download_artifact, screen_text, settle, until, until_row


async def submit(client, *command: str, **fields):
    return (await client.submit_task(TaskSpec(command=list(command), **fields))).uuid


def held(pane: TasksPane) -> list:
    return [pane.window.row(i) for i in range(pane.window.total or 0) if pane.window.row(i)]


async def test_a_task_from_the_form_runs_to_completed_in_the_table(alice_tasks, real_worker):
    """n, a command, the group, Ctrl+S: the new task is under the cursor and the live stream
    takes it from ready to completed without a reload."""
    async with alice_tasks() as (pilot, pane):
        app = pilot.app
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, SubmitForm), what="submit form")
        form = app.screen
        form.query_one("#submit-group", Select).value = "lab"
        await pilot.press(*"sh -c 'echo from the form'")
        form.query_one("#submit-labels", Input).value = "tui"
        events_before = app.live.count
        await pilot.press("ctrl+s")
        task = await until_row(pilot, pane, lambda t: t.labels == ["tui"], what="the new row")
        await until(pilot, lambda: pane.focused_task().uuid == task.uuid, what="cursor on it")
        assert task.command == ["sh", "-c", "echo from the form"]
        assert task.group == "lab"
        done = await until_row(
            pilot,
            pane,
            lambda t: t.uuid == task.uuid and t.state == TaskState.COMPLETED,
            what="completed",
        )
        assert app.live.count >= events_before + 3  # ready, running, completed: streamed
        assert done.exit_code == 0
        await until(pilot, lambda: "✔ completed" in screen_text(app), what="drawn")


async def test_the_form_checks_fields_as_they_are_typed(alice_tasks, lab):
    """A bad timeout turns the field invalid with the batch command's words; nothing is sent
    while a field is wrong; once sent, the new task's UUID is shown and the cursor is on it."""
    async with alice_tasks() as (pilot, pane):
        app = pilot.app
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, SubmitForm), what="submit form")
        form = app.screen
        await pilot.press(*"true")
        form.query_one("#submit-timeout", Input).focus()
        await pilot.press(*"ten minutes")
        await pilot.pause()
        assert form.query_one("#submit-timeout", Input).has_class("-invalid")
        assert "duration such as 30s" in str(form.query_one("#form-error").render())
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, SubmitForm)
        form.query_one("#submit-timeout", Input).value = "2m"
        form.query_one("#submit-terminal", Checkbox).value = True
        await pilot.press("ctrl+s")
        task = await until_row(pilot, pane, lambda t: True, what="the new task")
        assert task.timeout == 120
        assert task.terminal_output
        said = f"Submitted alice#1: {task.uuid}"
        await until(pilot, lambda: any(n.message == said for n in app._notifications), what=said)
        await until(pilot, lambda: pane.focused_task().uuid == task.uuid, what="cursor on it")


async def test_filter_words_and_state_quick_filters_ask_the_coordinator(alice_tasks, lab):
    """/ with tag:, label: and text narrows the rows to what the coordinator matched; f
    steps through the state quick-filters."""
    await submit(lab, "python", "train.py", group="lab", tags=["gpu"], labels=["exp1"])
    await submit(lab, "python", "eval.py", group="lab", tags=["gpu"])
    cancelled = await submit(lab, "python", "train.py", group="lab")
    await lab.cancel_task(cancelled)
    async with alice_tasks() as (pilot, pane):
        app = pilot.app
        assert pane.window.total == 3
        await pilot.press("slash")
        await pilot.press(*"train tag:gpu", "enter")
        await until(pilot, lambda: pane.window.total == 1, what="one match")
        assert held(pane)[0].labels == ["exp1"]
        await until(pilot, lambda: "/train tag:gpu" in screen_text(app), what="the filter")
        await pilot.press("slash")
        app.screen.query_one("#tasks-filter", Input).value = "label:exp1"
        await pilot.press("enter")
        await until(pilot, lambda: pane.window.total == 1, what="label match")
        await pilot.press("slash")
        app.screen.query_one("#tasks-filter", Input).value = ""
        await pilot.press("enter")
        await until(pilot, lambda: pane.window.total == 3, what="no filter")
        for _ in range(6):  # all → active → queued → running → failed → completed → cancelled
            await pilot.press("f")
        await until(pilot, lambda: pane.window.total == 1, what="the cancelled one")
        assert held(pane)[0].uuid == cancelled
        await until(pilot, lambda: "[cancelled]" in screen_text(app), what="the chip")


async def test_g_shows_one_group_and_the_status_bar_names_my_role_in_it(alice_tasks, lab):
    """All groups at first; g and a group from the selector: only that group's tasks (asked
    of the coordinator), with alice's role in it on the status bar."""
    mine = await submit(lab, "echo", "personal")  # alice's personal group
    in_lab = await submit(lab, "echo", "lab", group="lab")
    async with alice_tasks(size=(120, 30)) as (pilot, pane):
        app = pilot.app
        assert pane.window.total == 2
        await pilot.press("g")
        select = app.screen.query_one("#tasks-group", Select)
        await until(pilot, lambda: select.expanded, what="the group list")
        await pilot.press("down", "down", "enter")  # all groups, alice, lab
        await until(pilot, lambda: pane.window.total == 1, what="lab's task only")
        assert [task.uuid for task in held(pane)] == [in_lab]
        assert pane.table.has_focus
        await until(pilot, lambda: "group lab:admin" in screen_text(app), what="my role")
        select.value = "alice"
        await until(pilot, lambda: held(pane) and held(pane)[0].uuid == mine, what="alice's")
        assert pane.window.total == 1


async def test_a_bad_filter_word_is_explained(alice_tasks, lab):
    """state:finished is not a state: the filter is refused with the list of states."""
    async with alice_tasks() as (pilot, _pane):
        app = pilot.app
        await pilot.press("slash", *"state:finished", "enter")
        await until(pilot, lambda: app._notifications, what="a notification")
        assert "states are pending, ready" in "".join(n.message for n in app._notifications)


async def test_space_selects_and_cancel_asks_then_cancels_the_selection(alice_tasks, lab):
    """Space marks tasks (with a count); c asks once for all of them; y cancels them."""
    first = await submit(lab, "sleep", "1", group="lab")
    second = await submit(lab, "sleep", "2", group="lab")
    kept = await submit(lab, "sleep", "3", group="lab")
    async with alice_tasks() as (pilot, pane):
        app = pilot.app
        await pilot.press("down", "space", "space")  # newest first: second, first
        assert pane.selected == {first, second}
        await until(pilot, lambda: "2 selected" in screen_text(app), what="the count")
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        await until(pilot, lambda: "Cancel 2 tasks?" in screen_text(app), what="question")
        await pilot.press("y")
        await until_row(
            pilot,
            pane,
            lambda t: t.uuid == first and t.state == TaskState.CANCELLED,
            what="first cancelled",
        )
        await until_row(
            pilot,
            pane,
            lambda t: t.uuid == second and t.state == TaskState.CANCELLED,
            what="second cancelled",
        )
        assert not pane.selected
    assert (await lab.get_task(kept)).state == TaskState.READY


async def test_cancelling_a_running_task_kills_it(alice_tasks, real_worker, lab):
    """c on a running task, confirmed: the worker kills it and the row says cancelled."""
    task = await submit(lab, "sleep", "60", group="lab")
    async with alice_tasks() as (pilot, pane):
        app = pilot.app
        await until_row(
            pilot, pane, lambda t: t.state == TaskState.RUNNING, what="running", timeout=30
        )
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        await pilot.press("y")
        await until_row(
            pilot,
            pane,
            lambda t: t.uuid == task and t.state == TaskState.CANCELLED and not t.cancel_pending,
            what="cancelled and killed",
            timeout=30,
        )
    info = await lab.get_task(task)
    assert info.cancelled_by == "alice"
    assert info.attempts[-1].ended_at is not None  # the worker confirmed the kill


async def test_rerun_submits_a_copy_and_moves_the_cursor_to_it(alice_tasks, lab):
    """r on a task: a copy is submitted (linked to it) and the cursor lands on the copy."""
    original = await submit(lab, "python", "train.py", "--seed", "1", group="lab")
    async with alice_tasks() as (pilot, pane):
        await pilot.press("r")
        copy = await until_row(pilot, pane, lambda t: t.uuid != original, what="the copy")
        await until(pilot, lambda: pane.focused_task().uuid == copy.uuid, what="cursor on it")
        assert copy.command == ["python", "train.py", "--seed", "1"]
    assert (await lab.get_task(copy.uuid)).rerun_of == original


async def test_labels_are_edited_through_the_form(alice_tasks, lab):
    """e opens the labels of the task; OK replaces them on the coordinator and in the row."""
    task = await submit(lab, "true", group="lab", labels=["old"])
    async with alice_tasks() as (pilot, pane):
        app = pilot.app
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, LabelsForm), what="labels form")
        field = app.screen.query_one("#labels-value", Input)
        assert field.value == "old"
        field.value = "best, exp2"
        await pilot.press("enter")
        await until_row(pilot, pane, lambda t: t.labels == ["best", "exp2"], what="relabelled")
    assert (await lab.get_task(task)).labels == ["best", "exp2"]


async def test_an_artifact_is_downloaded_with_a_progress_bar(
    alice_tasks, real_worker, lab, tmp_path
):
    """a lists the task's artifacts; d saves the result as <uuid>-result.tar.gz."""
    task = await submit(lab, "sh", "-c", 'echo 42 > "$MITO_RESULT_DIR/answer"', group="lab")
    async with alice_tasks() as (pilot, pane):
        app = pilot.app
        await until_row(
            pilot, pane, lambda t: t.state == TaskState.COMPLETED, what="done", timeout=30
        )
        screen = await download_artifact(pilot, tmp_path)
        saved = tmp_path / f"{task}-result.tar.gz"
        await until(pilot, saved.exists, what="the file")
        await until(pilot, lambda: "Saved" in screen_text(app), what="done")
        assert screen.query_one("#artifact-progress").percentage == 1.0
    with tarfile.open(saved) as archive:
        assert archive.extractfile("result/answer").read() == b"42\n"


async def test_y_copies_the_uuid(alice_tasks, lab):
    """y puts the focused task's UUID on the clipboard and says so."""
    task = await submit(lab, "true", group="lab")
    async with alice_tasks() as (pilot, _pane):
        app = pilot.app
        await pilot.press("y")
        assert app.clipboard == str(task)
        assert f"Copied {task}" in "".join(n.message for n in app._notifications)


def summary(app) -> str:
    return str(app.main_screen.query_one("#tasks-summary").render())


async def click_header(pilot, pane: TasksPane, title: str) -> None:
    x = MARK_WIDTH
    for column, width in pane.table.columns():
        if column.title == title:
            await pilot.click(pane.table, offset=(x, 0))
            return
        x += width + GAP
    raise AssertionError(f"no {title} column on screen")


async def test_s_moves_the_sort_to_the_next_column_on_screen(alice_tasks, lab):
    """At 80 columns s goes age → duration → exit → state → group → priority → age, each in
    its own first direction; the header's arrow and the summary follow."""
    await submit(lab, "true", group="lab")
    async with alice_tasks() as (pilot, _pane):
        app = pilot.app
        steps = [
            ("DUR▼", "sort duration ▼"),
            ("EXI▼", "sort exit ▼"),
            ("STATE▼", "sort state ▼"),
            ("GROUP▲", "sort group ▲"),
            ("PRIO▼", "sort priority ▼"),
            ("AGE▼", "sort age ▼"),
        ]
        for header, words in steps:
            await pilot.press("s")
            await until(pilot, lambda h=header: h in screen_text(app), what=header)
            assert words in summary(app)


async def test_clicking_a_header_sorts_on_the_coordinator_and_again_reverses(alice_tasks, lab):
    """A click on PRIO: highest first, as the coordinator orders them; a second click: lowest
    first."""
    for priority in (1, 9, 5):
        await submit(lab, "true", group="lab", priority=priority)
    async with alice_tasks() as (pilot, pane):
        app = pilot.app
        assert [t.priority for t in held(pane)] == [5, 9, 1]  # newest first
        await click_header(pilot, pane, "PRIO")
        await until(pilot, lambda: [t.priority for t in held(pane)] == [9, 5, 1], what="▼")
        await until(pilot, lambda: "PRIO▼" in screen_text(app), what="the arrow")
        await click_header(pilot, pane, "PRIO")
        await until(pilot, lambda: [t.priority for t in held(pane)] == [1, 5, 9], what="▲")
        assert "sort priority ▲" in summary(app)


async def test_by_state_running_and_queued_come_first_and_S_reverses(alice_tasks, lab):
    """State ▼: ready, then pending, then cancelled; S turns it round."""
    ready = await submit(lab, "true", group="lab")
    cancelled = await submit(lab, "true", group="lab")
    await lab.cancel_task(cancelled)
    pending = await submit(lab, "true", group="lab", depends_on=[Dependency(task=ready)])
    async with alice_tasks() as (pilot, pane):
        await click_header(pilot, pane, "STATE")
        wanted = [ready, pending, cancelled]
        await until(pilot, lambda: [t.uuid for t in held(pane)] == wanted, what="by state")
        await pilot.press("S")
        await until(pilot, lambda: [t.uuid for t in held(pane)] == wanted[::-1], what="S")
        assert "sort state ▲" in summary(pilot.app)


async def test_a_large_group_sorted_by_a_column_stays_paged_and_in_order(alice_tasks, lab):
    """1,500 tasks by priority: still a chunk at a time, and End's page (read from the other
    end, in reverse) joins the order: the last row is the oldest of the lowest priority."""
    specs = [TaskSpec(command=["true", str(n)], group="lab", priority=n % 7) for n in range(1500)]
    await lab.submit_tasks(specs)
    async with alice_tasks() as (pilot, pane):
        await click_header(pilot, pane, "PRIO")
        await until(pilot, lambda: pane.window.row(0).priority == 6, what="sorted")
        assert pane.window.held_rows <= 3 * CHUNK
        await pilot.press("end")
        await until(pilot, lambda: pane.window.row(1499) is not None, what="the last page")
        assert pane.focused_task().command == ["true", "0"]
        tail = [pane.window.row(i) for i in range(1400, 1500)]
        keys = [(t.priority, int(t.command[1])) for t in tail]
        assert keys == sorted(keys, reverse=True)


async def test_a_large_group_is_read_a_chunk_at_a_time(alice_tasks, lab):
    """1,500 tasks: the pane holds only chunks near the view, End reads the oldest page
    (from the other end), and the rows stay in order."""
    specs = [TaskSpec(command=["true", str(n)], group="lab") for n in range(1500)]
    await lab.submit_tasks(specs)
    async with alice_tasks() as (pilot, pane):
        assert pane.window.total == 1500
        assert pane.window.held_rows <= 3 * CHUNK  # what is seen, and two chunks ahead
        assert pane.window.row(0).command == ["true", "1499"]
        await pilot.press("end")
        await until(pilot, lambda: pane.window.row(1499) is not None, what="the last page")
        assert pane.window.row(1499).command == ["true", "0"]
        assert pane.focused_task().command == ["true", "0"]
        for _ in range(30):
            await pilot.press("pageup")
        await settle(pilot)
        assert pane.window.held_rows <= KEEP * CHUNK
        top = pane.table.first_visible
        rows = [pane.window.row(i) for i in range(top, top + 10)]
        assert [r.command[1] for r in rows] == [str(1499 - i) for i in range(top, top + 10)]


async def test_an_ended_session_on_an_action_returns_to_the_login_screen(alice_tasks, connect, lab):
    """The session is ended elsewhere: the next action meets a 401 and the login screen."""
    await submit(lab, "true", group="lab")
    async with alice_tasks() as (pilot, _pane):
        app = pilot.app
        other = await connect("alice", "pw")
        await other.logout(everywhere=True)
        for _ in range(40):  # token checks are cached for up to a second
            await pilot.press("r")
            await settle(pilot)
            if isinstance(app.screen, LoginScreen):
                break
            await pilot.pause(0.1)
        assert isinstance(app.screen, LoginScreen)
        assert app.stream_state == ""
