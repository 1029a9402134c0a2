"""Task details: spec, result, attempts and artifacts; why a task waits; links; live."""

from __future__ import annotations

import re

from textual.widgets import OptionList

from mitosis_sdk.schemas import Dependency, Role, TaskSpec, TaskState
from mitosis_server.services.task_queries import MAX_DEPENDENTS
from mitosis_tui.screens.task_details import TaskDetailsScreen
from tests.integration.server.fleet import start_worker
from tests.tui.conftest import screen_text, until, until_row
from tests.tui.test_tasks_pane import submit


async def open_details(pilot, pane, task) -> TaskDetailsScreen:
    """Put the cursor on ``task`` and press Enter; the screen once it has read the task."""
    await until(pilot, lambda: pane.window.locate(task) is not None, what="the row")
    pane.table.move_cursor(pane.window.locate(task))
    await pilot.press("enter")
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, TaskDetailsScreen), what="details")
    screen = app.screen
    await until(pilot, lambda: screen.info is not None, what="the task read")
    return screen


def text_of(screen: TaskDetailsScreen) -> str:
    return screen_text(screen.app)


async def open_link(pilot, screen: TaskDetailsScreen, target, *keys: str) -> TaskDetailsScreen:
    """In the links of ``screen``, press ``keys`` then Enter: ``target``'s details, on top."""
    app = pilot.app
    screen.query_one("#details-links").focus()
    await pilot.press(*keys, "enter")
    await until(
        pilot,
        lambda: isinstance(app.screen, TaskDetailsScreen) and app.screen.task_id == target,
        what=f"the details of {target}",
    )
    return app.screen


async def test_details_show_spec_result_attempts_and_artifacts(alice_tasks, real_worker, lab):
    """A finished task: its command, env, tags, the exit code, the attempt on its worker and
    the std-log artifact with its size."""
    spec = TaskSpec(
        command=["sh", "-c", "echo out; exit 3"],
        group="lab",
        env={"SEED": "7"},
        tags=[],
        labels=["exp1"],
        priority=4,
        timeout="5m",
        terminal_output=True,
    )
    task = (await lab.submit_task(spec)).uuid
    async with alice_tasks((100, 60)) as (pilot, pane):
        await until_row(
            pilot, pane, lambda t: t.state == TaskState.FAILED, what="failed", timeout=30
        )
        screen = await open_details(pilot, pane, task)
        await until(pilot, lambda: screen.artifacts, what="the artifacts")
        await until(pilot, lambda: "std-log" in text_of(screen), what="drawn")
        text = text_of(screen)
        for expected in (
            r"command\s+sh -c echo out; exit 3",
            r"env\s+SEED=7",
            r"labels\s+exp1",
            r"priority\s+4",
            r"timeout\s+5m",
            r"exit code\s+3",
            r"reason\s+nonzero_exit",
            r"Attempts",
            r"✔fetching",
            r"std-log\s+\d",
        ):
            assert re.search(expected, text), expected
        assert str(screen.info.worker)[:8] in text


async def test_a_waiting_task_says_why_worker_by_worker(alice_tasks, lab, transport):
    """A ready task no worker may take: the explanation names each worker and its rule."""
    busy = await start_worker(lab, transport, groups={"lab": Role.WRITE}, tags=["cpu"])
    task = await submit(lab, "true", group="lab", tags=["gpu"])
    async with alice_tasks((100, 40)) as (pilot, pane):
        screen = await open_details(pilot, pane, task)
        await until(pilot, lambda: screen.explain is not None, what="the explanation")
        await until(pilot, lambda: "Why it is not running" in text_of(screen), what="drawn")
        text = text_of(screen)
        assert busy.uuid[:8] in text
        assert "tags" in text
        assert screen.explain.summary in text


async def test_links_open_the_linked_task_and_esc_comes_back(alice_tasks, lab):
    """A dependent lists the task it waits for; Enter opens it, Esc returns."""
    upstream = await submit(lab, "sleep", "1", group="lab")
    dependent = (
        await lab.submit_task(
            TaskSpec(command=["true"], group="lab", depends_on=[Dependency(task=upstream)])
        )
    ).uuid
    async with alice_tasks() as (pilot, pane):
        app = pilot.app
        screen = await open_details(pilot, pane, dependent)
        await until(pilot, lambda: "depends on (afterok)" in text_of(screen), what="the link")
        await open_link(pilot, screen, upstream)
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen, what="back")


async def test_dependents_are_listed_with_their_conditions_and_open(alice_tasks, lab):
    """An upstream lists the tasks waiting on it, each with its condition; Enter on one
    opens it, Esc returns."""
    upstream = await submit(lab, "sleep", "1", group="lab")
    waits = [Dependency(task=upstream, condition=c) for c in ("afterok", "afterany")]
    first, second = [
        (await lab.submit_task(TaskSpec(command=["true"], group="lab", depends_on=[w]))).uuid
        for w in waits
    ]
    async with alice_tasks((100, 40)) as (pilot, pane):
        app = pilot.app
        screen = await open_details(pilot, pane, upstream)
        await until(pilot, lambda: "dependent (afterany)" in text_of(screen), what="the links")
        assert re.search(rf"dependent \(afterok\)\s+{str(first)[:8]}", text_of(screen))
        await open_link(pilot, screen, second, "down")
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen, what="back")


async def test_a_downstream_task_and_its_writer_list_each_other_once(alice_tasks, lab, transport):
    """A task submitted through MITO_NEW_TASK waits on its writer: each lists the other once,
    naming both links (T7)."""
    worker = await start_worker(lab, transport, groups={"lab": Role.WRITE})
    writer = await submit(lab, "write", group="lab")
    held = await worker.fetch_one()
    content = '{"command": ["n"]}'
    reply = await worker.client.submit_downstream(worker.uuid, writer, held.attempt, content)
    async with alice_tasks((100, 40)) as (pilot, pane):
        screen = await open_details(pilot, pane, writer)
        links = screen.query_one("#details-links", OptionList)
        await until(pilot, lambda: links.option_count, what="the links")
        assert links.option_count == 1
        assert "submitted, dependent (afterany)" in text_of(screen)
        child_screen = await open_link(pilot, screen, reply.tasks[0].uuid)
        await until(pilot, lambda: "submitted by" in text_of(child_screen), what="drawn")
        assert "depends on (afterany), submitted by" in text_of(child_screen)


async def test_dependents_past_the_bound_are_counted(alice_tasks, lab):
    """With more dependents than the coordinator lists, the last line says how many more."""
    upstream = await submit(lab, "true", group="lab")
    waiting = TaskSpec(command=["x"], group="lab", depends_on=[Dependency(task=upstream)])
    await lab.submit_tasks([waiting] * (MAX_DEPENDENTS + 3))
    async with alice_tasks() as (pilot, _pane):
        screen = TaskDetailsScreen(upstream)
        await pilot.app.push_screen(screen)
        links = screen.query_one("#details-links", OptionList)
        await until(pilot, lambda: links.option_count, what="the links")
        assert links.option_count == MAX_DEPENDENTS + 1
        last = links.get_option_at_index(MAX_DEPENDENTS)
        assert (str(last.prompt), last.disabled) == ("… and 3 more dependents, not listed", True)


async def test_details_follow_the_task_live(alice_tasks, lab, connect):
    """Cancelled from elsewhere while shown: the details say cancelled, by whom."""
    task = await submit(lab, "true", group="lab")
    async with alice_tasks() as (pilot, pane):
        screen = await open_details(pilot, pane, task)
        other = await connect("alice", "pw")
        await other.cancel_task(task)
        await until(
            pilot,
            lambda: screen.info.state == TaskState.CANCELLED,
            what="cancelled",
            timeout=10,
        )
        await until(pilot, lambda: "by alice" in text_of(screen), what="drawn")
