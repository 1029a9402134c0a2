"""The app's one live event stream: coalesced batches, subscriptions by kind, the status
bar, and following a coordinator that restarts (reconnect, then resync)."""

from __future__ import annotations

from textual.widget import Widget

from mitosis_sdk.schemas.events import Event, EventKind
from mitosis_tui.live import TICK, LiveStream
from tests.tui.conftest import SIZE, ServedCoordinator, screen_text, until
from tests.tui.test_tasks_pane import submit


class Recorder(Widget):
    """A subscriber that keeps what it was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[Event]] = []
        self.resyncs = 0

    def on_live_stream_events(self, message: LiveStream.Events) -> None:
        self.batches.append(message.events)

    def on_live_stream_resync(self, _message: LiveStream.Resync) -> None:
        self.resyncs += 1


def event(kind: EventKind, object_id: str, **payload) -> Event:
    return Event(kind=kind, groups=["lab"], object_id=object_id, payload=payload)


async def subscribed(pilot, kinds=None) -> Recorder:
    recorder = Recorder()
    await pilot.app.screen.mount(recorder)
    pilot.app.live.subscribe(recorder, kinds)
    return recorder


async def test_events_of_one_tick_arrive_as_one_batch_merged_per_object(make_tui):
    """Three events of one task and one of another within a tick: one batch of two, the
    task's payload merged (newest value wins, earlier fields kept)."""
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        recorder = await subscribed(pilot)
        live = app.live
        live.received(event(EventKind.TASK_STATE, "t1", state="ready", attempt=0))
        live.received(event(EventKind.TASK_STATE, "t1", state="running", worker="w1"))
        live.received(event(EventKind.TASK_STATE, "t2", state="ready"))
        live.received(event(EventKind.TASK_STATE, "t1", state="completed", exit_code=0))
        await until(pilot, lambda: recorder.batches, what="a batch", timeout=TICK * 20)
        await pilot.pause(TICK * 2)
        assert len(recorder.batches) == 1
        batch = {e.object_id: e.payload for e in recorder.batches[0]}
        assert batch == {
            "t1": {"state": "completed", "attempt": 0, "worker": "w1", "exit_code": 0},
            "t2": {"state": "ready"},
        }


async def test_a_subscriber_gets_only_the_kinds_it_asked_for(make_tui):
    """A workers view subscribed to worker.state never sees task events."""
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        workers = await subscribed(pilot, {EventKind.WORKER_STATE})
        everything = await subscribed(pilot)
        app.live.received(event(EventKind.TASK_STATE, "t1", state="ready"))
        app.live.received(event(EventKind.WORKER_STATE, "w1", state="online"))
        await until(pilot, lambda: everything.batches, what="a batch")
        await until(pilot, lambda: workers.batches, what="the worker batch")
        assert [e.object_id for e in workers.batches[0]] == ["w1"]
        assert {e.object_id for e in everything.batches[0]} == {"t1", "w1"}


async def test_a_restarted_coordinator_is_followed_again_and_views_resync(
    alice_tasks, served, settings, served_port, lab
):
    """The coordinator goes away: the bar says the stream is reconnecting; it comes back
    (its event history gone): the stream starts afresh, subscribers resync, events flow."""
    async with alice_tasks() as (pilot, _pane):
        app = pilot.app
        await submit(lab, "true", group="lab")
        await until(pilot, lambda: app.live.cursor is not None, what="a cursor")
        recorder = await subscribed(pilot)
        served.stop()
        await until(
            pilot,
            lambda: app.stream_state.startswith(("reconnecting", "offline")),
            what="reconnecting",
            timeout=15,
        )
        await until(pilot, lambda: "live: " in screen_text(app), what="shown in the bar")
        again = ServedCoordinator(settings, served_port)
        again.start()
        try:
            await until(pilot, lambda: app.stream_state == "live", what="live", timeout=40)
            await until(pilot, lambda: recorder.resyncs, what="a resync")
            recorder.batches.clear()
            task = await submit(lab, "true", group="lab")
            await until(
                pilot,
                lambda: any(e.object_id == str(task) for b in recorder.batches for e in b),
                what="an event after the restart",
            )
        finally:
            again.stop()
