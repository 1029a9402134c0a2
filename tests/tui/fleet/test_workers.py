"""The Workers pane with real `mitosis-worker` processes on a served coordinator: listing,
drain and resume, tags, graceful and forced shutdown; and, with registered workers on the
in-process coordinator, filters, selection, details, grants and refusals."""

from __future__ import annotations

import asyncio
import socket
import uuid
from pathlib import Path

import msgspec
from textual.widgets import Input

from mitosis_sdk.client import AsyncClient
from mitosis_sdk.schemas import Grant, HostFacts, Member, Role, TaskSpec, WorkerInfo, WorkerState
from mitosis_tui.commands.workers import WORKER_COLUMNS
from mitosis_tui.screens.confirm import ConfirmScreen
from mitosis_tui.screens.worker_details import WorkerDetailsScreen, slots_line
from mitosis_tui.screens.worker_forms import GrantsForm, ValuesForm
from mitosis_tui.widgets.worker_table import COLUMNS
from mitosis_tui.widgets.workers_pane import WorkersPane
from tests.tui.conftest import SIZE, URL, screen_text, settle, until
from tests.tui.fleet.conftest import tui_for
from tests.tui.test_groups import rows

SLOW = 40.0  # a worker process starting or stopping on a busy machine


async def open_workers(pilot) -> WorkersPane:
    await settle(pilot)
    pilot.app.main_screen.action_show_pane("workers")
    return pilot.app.query_one(WorkersPane)


def column(pane: WorkersPane, name: str) -> list[str]:
    index = [key for key, _, _ in COLUMNS].index(name)
    return [row[index] for row in rows(pane.table)]


def notifications(app) -> str:
    return "\n".join(n.message for n in app._notifications)


async def the_listed_worker(pilot, pane: WorkersPane):
    """Wait until the pane lists the one started worker; its id."""
    await until(pilot, lambda: pane.table.row_count == 1, SLOW, "the worker")
    (worker_id,) = pane.table.infos
    return worker_id


async def a_running_task(pilot, pane: WorkersPane, client: AsyncClient, release: Path):
    """Once the worker is listed, submit a task that runs until ``release`` exists and wait
    until the pane shows it running (a fixed sleep could end before a busy machine shows it)."""
    await the_listed_worker(pilot, pane)
    command = ["sh", "-c", f'until [ -e "{release}" ]; do sleep 0.05; done']
    task = (await client.submit_task(TaskSpec(command=command))).uuid
    await until(pilot, lambda: column(pane, "slots") == ["1/1"], SLOW, "the task running")
    return task


async def client_for(served, user: str) -> AsyncClient:
    client = AsyncClient(URL, transport=served.transport())
    await client.login(user, "pw")
    return client


# -- with real worker processes -------------------------------------------------------------


async def test_the_pane_lists_a_real_worker(served_lab, worker_processes, tmp_path):
    """A started worker appears with state, host, slots, tags, labels, grants and version."""
    worker_processes.start("-t", "gpu", "-l", "rack1", "-g", "lab", "--slots", "2")
    app = await tui_for(served_lab, tmp_path, "alice", refresh_interval=0.5)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_workers(pilot)
        await until(pilot, lambda: pane.table.row_count == 1, SLOW, "the worker")
        (worker,) = pane.table.infos.values()
        assert column(pane, "state") == ["● online"]
        assert column(pane, "host") == [socket.gethostname()]
        assert column(pane, "slots") == ["0/2"]
        assert column(pane, "tags") == ["gpu"]
        assert column(pane, "labels") == ["rack1"]
        assert column(pane, "grants") == ["alice:admin,lab:write"]
        assert column(pane, "version") == [worker.version] != ["-"]
        assert "1 of 1 worker(s)" in screen_text(app)


async def test_drain_and_resume_a_real_worker(served_lab, worker_processes, tmp_path):
    """d drains the worker under the cursor, u resumes it; the coordinator agrees."""
    worker_processes.start("-g", "lab")
    alice = await client_for(served_lab, "alice")
    app = await tui_for(served_lab, tmp_path, "alice", refresh_interval=0.5)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_workers(pilot)
        worker_id = await the_listed_worker(pilot, pane)
        await pilot.press("d")
        await until(pilot, lambda: column(pane, "state") == ["◐ draining"], what="draining")
        assert (await alice.get_worker(worker_id)).state == WorkerState.DRAINING
        await pilot.press("u")
        await until(pilot, lambda: column(pane, "state") == ["● online"], what="online again")
        assert (await alice.get_worker(worker_id)).state == WorkerState.ONLINE
    await alice.aclose()


async def test_edit_the_tags_of_a_real_worker(served_lab, worker_processes, tmp_path):
    """t opens the tags form with the current tags; OK replaces them on the coordinator."""
    worker_processes.start("-t", "gpu")
    alice = await client_for(served_lab, "alice")
    app = await tui_for(served_lab, tmp_path, "alice", refresh_interval=0.5)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_workers(pilot)
        worker_id = await the_listed_worker(pilot, pane)
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, ValuesForm), what="tags form")
        field = app.screen.query_one("#values", Input)
        assert field.value == "gpu"
        field.value = "gpu, cuda12 gpu"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: column(pane, "tags") == ["cuda12,gpu"], what="new tags")
        assert (await alice.get_worker(worker_id)).tags == ["cuda12", "gpu"]
    await alice.aclose()


async def test_graceful_shutdown_lets_the_task_finish_and_the_worker_exit(
    served_lab, worker_processes, tmp_path
):
    """x asks first (running tasks finish), then the worker finishes its task and exits."""
    process = worker_processes.start()
    alice = await client_for(served_lab, "alice")
    app = await tui_for(served_lab, tmp_path, "alice", refresh_interval=0.5)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_workers(pilot)
        release = tmp_path / "release"
        task = await a_running_task(pilot, pane, alice, release)
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        assert "lets its 1 running task(s) finish, then exits" in app.screen.question
        await pilot.press("y")
        await until(pilot, lambda: "ordered to shut down" in notifications(app), SLOW)
        release.touch()
        assert await asyncio.to_thread(process.wait, SLOW) == 0, worker_processes.log()
        await until(pilot, lambda: pane.table.row_count == 0, SLOW, "the stopped worker gone")
        assert "ordered to shut down" in notifications(app)
    assert (await alice.get_task(task)).state == "completed"
    await alice.aclose()


async def test_forced_shutdown_requeues_the_running_task(served_lab, worker_processes, tmp_path):
    """X says running tasks are killed and requeued; the worker exits and the task is ready."""
    process = worker_processes.start()
    alice = await client_for(served_lab, "alice")
    app = await tui_for(served_lab, tmp_path, "alice", refresh_interval=0.5)
    async with app.run_test(size=SIZE) as pilot:
        task = await a_running_task(pilot, await open_workers(pilot), alice, tmp_path / "never")
        await pilot.press("X")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        assert "Its 1 running task(s) are killed at once and go back to the queue" in (
            app.screen.question
        )
        await pilot.press("y")
        assert await asyncio.to_thread(process.wait, SLOW) == 0, worker_processes.log()
    info = await alice.get_task(task)
    assert (info.state, info.attempt) == ("ready", 1)
    await alice.aclose()


# -- with registered workers on the in-process coordinator ----------------------------------


async def register(client, *, tags=(), labels=(), groups=(), host="node-1", slots=1):
    grants = [Grant(group=group, role=role) for group, role in groups]
    reply = await client.register_worker(
        tags=list(tags),
        labels=list(labels),
        grants=grants,
        slots=slots,
        facts=HostFacts(hostname=host, cores=8, memory=16 * 10**9, os="Linux", arch="x86_64"),
        version="1.2.3",
    )
    return reply.worker


async def lab(make_user):
    alice = await make_user("alice")
    bob = await make_user("bob")
    await alice.create_group("lab")
    await alice.update_members("lab", [Member(username="bob", role=Role.READ)])
    return alice, bob


async def test_a_member_without_admin_is_told_why_nothing_changed(make_tui, make_user, remember):
    """bob reads lab and sees its worker; d shows the coordinator's refusal, not a crash."""
    alice, _ = await lab(make_user)
    worker = await register(alice, groups=[("lab", Role.WRITE)])
    await remember("bob")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_workers(pilot)
        await until(pilot, lambda: pane.table.row_count == 1, what="the worker")
        await pilot.press("d")
        await settle(pilot)
        assert "managing worker" in notifications(app)
        assert "needs its creator" in notifications(app)
        assert column(pane, "state") == ["● online"]
    assert (await alice.get_worker(worker.uuid)).state == WorkerState.ONLINE


async def test_the_filter_narrows_by_tag_state_and_text(make_tui, make_user, remember):
    """/ with tag:, state: and words; a bad state is explained and nothing changes."""
    alice = await make_user("alice")
    await register(alice, tags=["gpu"], host="gpu-1")
    cpu = await register(alice, tags=["cpu"], labels=["rack2"], host="cpu-1")
    await alice.drain_worker(cpu.uuid)
    await remember("alice")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_workers(pilot)
        await until(pilot, lambda: pane.table.row_count == 2, what="both workers")
        for text, hosts in (
            ("tag:gpu", ["gpu-1"]),
            ("state:draining", ["cpu-1"]),
            ("RACK2", ["cpu-1"]),
            ("", ["cpu-1", "gpu-1"]),
        ):
            await pilot.press("slash")
            pane.query_one("#worker-filter", Input).value = text
            await pilot.press("enter")
            await settle(pilot)
            assert sorted(column(pane, "host")) == hosts, text
        await pilot.press("slash")
        pane.query_one("#worker-filter", Input).value = "state:sleepy"
        await pilot.press("enter")
        await settle(pilot)
        assert "unknown state" in notifications(app)
        assert pane.table.row_count == 2


async def test_space_selects_workers_and_actions_apply_to_all(make_tui, make_user, remember):
    """Two workers selected with Space are drained together, and the pane says so."""
    alice = await make_user("alice")
    first = await register(alice, host="a")
    second = await register(alice, host="b")
    await register(alice, host="c")
    await remember("alice")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_workers(pilot)
        await until(pilot, lambda: pane.table.row_count == 3, what="three workers")
        hosts = column(pane, "host")
        pane.table.move_cursor(row=hosts.index("a"))
        await pilot.press("space")
        pane.table.move_cursor(row=hosts.index("b"))
        await pilot.press("space")
        assert "2 selected" in screen_text(app)
        await pilot.press("d")
        await settle(pilot)
        assert "2 of 2 workers drained" in notifications(app)
        states = dict(zip(column(pane, "host"), column(pane, "state"), strict=True))
        assert states == {"a": "◐ draining", "b": "◐ draining", "c": "● online"}
    for worker in (first, second):
        assert (await alice.get_worker(worker.uuid)).state == WorkerState.DRAINING


async def test_details_show_everything_and_run_the_pane_keys(make_tui, make_user, remember):
    """Enter shows tags, labels, grants, host facts, slots and the running task; d drains."""
    alice, _ = await lab(make_user)
    worker = await register(
        alice, tags=["gpu"], labels=["rack1"], groups=[("lab", Role.WRITE)], slots=2
    )
    await remember("alice")
    app = make_tui()
    async with app.run_test(size=(100, 36)) as pilot:
        pane = await open_workers(pilot)
        await until(pilot, lambda: pane.table.row_count == 1, what="the worker")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, WorkerDetailsScreen), what="details")
        await settle(pilot)
        text = screen_text(app)
        for expected in (
            str(worker.uuid),
            "node-1 · 8 cores · 16.0GB memory · Linux x86_64",
            "0 of 2 in use",
            "gpu",
            "rack1",
            "alice:admin, lab:write",
            "1.2.3",
            "No running tasks.",
        ):
            assert expected in text, expected
        await pilot.press("d")
        await until(pilot, lambda: column(pane, "state") == ["◐ draining"], what="drained")
        assert not isinstance(app.screen, WorkerDetailsScreen)


async def test_grants_are_set_exactly_as_written(make_tui, make_user, remember):
    """g shows GROUP:ROLE; a changed role is updated and a group left out loses its grant."""
    alice, _ = await lab(make_user)
    worker = await register(alice, groups=[("lab", Role.WRITE)])
    await remember("alice")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_workers(pilot)
        await until(pilot, lambda: pane.table.row_count == 1, what="the worker")
        await pilot.press("g")
        await until(pilot, lambda: isinstance(app.screen, GrantsForm), what="grants form")
        field = app.screen.query_one("#grants", Input)
        assert field.value == "alice:admin lab:write"
        field.value = "lab:read"
        await pilot.press("enter")
        await until(pilot, lambda: column(pane, "grants") == ["lab:read"], what="new grants")
    shown = await alice.get_worker(worker.uuid)
    assert [(g.group, g.role) for g in shown.grants] == [("lab", Role.READ)]


async def test_a_bad_grant_is_refused_in_the_form(make_tui, make_user, remember):
    """An unknown role never reaches the coordinator: the form says what is wrong."""
    alice = await make_user("alice")
    await register(alice)
    await remember("alice")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_workers(pilot)
        await until(pilot, lambda: pane.table.row_count == 1, what="the worker")
        await pilot.press("g")
        await until(pilot, lambda: isinstance(app.screen, GrantsForm), what="grants form")
        app.screen.query_one("#grants", Input).value = "alice:boss"
        await pilot.press("enter")
        assert isinstance(app.screen, GrantsForm)
        assert "unknown role" in str(app.screen.query_one("#form-error").render())


async def test_apply_worker_keeps_the_page_true_to_the_filter(make_tui, make_user, remember):
    """A changed worker is rewritten in place, or taken off when it stops matching."""
    alice = await make_user("alice")
    worker = await register(alice, host="a")
    await remember("alice")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_workers(pilot)
        await until(pilot, lambda: pane.table.row_count == 1, what="the worker")
        pane.filter = pane.filter.parse("state:online")
        drained = await alice.drain_worker(worker.uuid)
        pane.apply_worker(drained)
        assert pane.table.row_count == 0
        pane.filter = pane.filter.parse("")
        pane.apply_worker(drained)
        assert column(pane, "state") == ["◐ draining"]


async def test_the_pane_follows_the_event_stream_without_reloading(served_lab, tmp_path):
    """With the backstop reload out of the way (an hour), a worker registered, drained and
    given a task elsewhere shows each change through the live stream."""
    alice = await client_for(served_lab, "alice")
    app = await tui_for(served_lab, tmp_path, "alice", refresh_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_workers(pilot)
        await until(pilot, lambda: app.stream_state == "live", SLOW, "the live stream")
        registered = await alice.register_worker(grants=[Grant(group="lab")], slots=1)
        await until(pilot, lambda: pane.table.row_count == 1, SLOW, "the new worker")
        await alice.drain_worker(registered.worker.uuid)
        await until(pilot, lambda: column(pane, "state") == ["◐ draining"], SLOW, "draining")
        await alice.resume_worker(registered.worker.uuid)
        await alice.submit_task(TaskSpec(command=["true"], group="lab"))
        async with AsyncClient(URL, registered.token, transport=served_lab.transport()) as worker:
            await worker.fetch_tasks(registered.worker.uuid)
        await until(pilot, lambda: column(pane, "slots") == ["1/1"], SLOW, "the task taken")


def test_slots_in_use_never_exceed_the_slots_and_the_rest_is_held_ahead():
    """A worker holding tasks ahead of its slots (short tasks) shows its slots full and
    the rest apart, in the table, the batch listing and the details."""
    worker = msgspec.convert(
        {
            "uuid": str(uuid.uuid4()),
            "creator": "alice",
            "state": "online",
            "tags": [],
            "labels": [],
            "grants": [],
            "slots": 2,
            "running": [str(uuid.uuid4()) for _ in range(5)],
            "last_heartbeat": "2026-12-07T12:00:00Z",
            "created_at": "2026-12-07T12:00:00Z",
            "version": "test",
            "facts": {},
        },
        WorkerInfo,
    )
    assert (worker.slots_in_use, worker.held_ahead) == (2, 3)
    assert slots_line(worker) == "2 of 2 in use, 3 more held ahead"
    busy = dict(WORKER_COLUMNS)["BUSY"]
    assert busy(worker) == "2/2"
    idle = msgspec.structs.replace(worker, running=[])
    assert (slots_line(idle), busy(idle)) == ("0 of 2 in use", "0/2")
