"""One live event stream per app: task and worker events, coalesced, for whoever subscribed.

The app owns one :class:`LiveStream` (``app.live``). While someone is logged in it follows
``GET /api/events`` in a Textual worker, for every group the user may read (Mitosis admins:
all groups, which is also what their Tasks pane can show), and hands the events to its
subscribers as Textual messages. The subscription API, for panes and screens::

    def on_mount(self) -> None:
        self.mitosis.live.subscribe(self, {EventKind.WORKER_STATE})

    def on_unmount(self) -> None:
        self.mitosis.live.unsubscribe(self)

    def on_live_stream_events(self, message: LiveStream.Events) -> None:
        for event in message.events:        # at most one per (kind, object) per batch
            ...

    def on_live_stream_resync(self, message: LiveStream.Resync) -> None:
        self.reload()                       # events may have been missed: read again

* **Coalescing.** Events are collected and delivered once per tick (``TICK``); within a
  batch, the events of one object and kind are merged into one whose payload is the union
  (newest value wins), so 200 events/s cost a handful of messages a second and never
  starve key presses. Messages do not bubble: each subscriber gets its own.
* **Resync.** Each time the stream is accepted without a cursor (the first connection, or
  after the coordinator no longer kept ours) nothing before that moment is replayed, so
  subscribers get :class:`LiveStream.Resync` and re-read what they show. Events are hints:
  correctness never depends on one (the app's backstop reload runs anyway).
* **Reconnecting.** The SDK resumes a broken stream from its cursor a few times by itself;
  when it gives up, this module waits with growing delays and reconnects from the last
  cursor. ``app.stream_state`` (shown in the status bar) says ``live``, ``connecting``,
  ``reconnecting``, ``reconnecting in Ns`` or ``offline, retrying in Ns``. A 401 goes back
  to the login screen through :meth:`MitosisApp.call`, like any other call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from textual.message import Message
from textual.message_pump import MessagePump
from textual.worker import Worker

from mitosis_sdk import errors
from mitosis_sdk.schemas.events import Event, EventKind
from mitosis_tui.workers import Reported

if TYPE_CHECKING:
    from mitosis_tui.app import MitosisApp

__all__ = ["STREAM_GROUP", "LiveStream"]

TICK = 0.2
RECONNECT_DELAYS = (1, 2, 4, 8, 15, 30)
OFFLINE_AFTER = 3  # failed reconnects in a row before the bar says "offline"
STREAM_GROUP = "live-stream"  # Textual worker groups ending in "-stream" run until stopped


class _CursorLost(Exception):
    """The coordinator no longer keeps our cursor: start again from now (and resync)."""


class LiveStream:
    class Events(Message, bubble=False):
        """A batch of events, coalesced per (kind, object)."""

        def __init__(self, events: list[Event]) -> None:
            super().__init__()
            self.events = events

    class Resync(Message, bubble=False):
        """The stream started from "now": what happened before may be missing."""

    def __init__(self, app: MitosisApp) -> None:
        self.app = app
        self.cursor: str | None = None
        self.count = 0  # events received since the app started
        self._subscribers: dict[MessagePump, frozenset[EventKind] | None] = {}
        self._pending: dict[tuple[str, str], Event] = {}
        self._flush_scheduled = False
        self._worker: Worker | None = None
        self._user: str | None = None
        self._connected_with_cursor = False

    # -- subscriptions -------------------------------------------------------------------

    def subscribe(self, target: MessagePump, kinds: Iterable[EventKind] | None = None) -> None:
        """Deliver events of ``kinds`` (None: every kind) to ``target`` until it unmounts."""
        self._subscribers[target] = None if kinds is None else frozenset(kinds)

    def unsubscribe(self, target: MessagePump) -> None:
        self._subscribers.pop(target, None)

    def _live_subscribers(self) -> list[tuple[MessagePump, frozenset[EventKind] | None]]:
        gone = [t for t in self._subscribers if not t.is_attached]
        for target in gone:
            del self._subscribers[target]
        return list(self._subscribers.items())

    # -- life ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.is_finished

    def start(self, username: str) -> None:
        """Follow the stream for ``username`` (a different user starts afresh)."""
        if self.running and username == self._user:
            return
        self.stop()
        if username != self._user:
            self.cursor = None
        self._user = username
        self._worker = self.app.run_worker(
            self._run(), name="live events", group=STREAM_GROUP, exclusive=True
        )

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
        self._pending.clear()
        self.app.stream_state = ""

    async def _run(self) -> None:
        failures = 0
        self.app.stream_state = "connecting"
        while True:
            try:
                await self.app.call(self._follow)
            except _CursorLost:
                self.cursor, failures = None, 0
                continue
            except Reported:
                if self.app.identity is None:
                    self.app.stream_state = ""
                    return  # logged out: the login screen is up
            failures += 1
            await self._wait_before_retry(failures)

    async def _follow(self, client) -> None:
        """Read the stream until it ends; ends normally when the coordinator closes it."""
        self._connected_with_cursor = self.cursor is not None
        stream = client.events(cursor=self.cursor, on_connect=self._connected, on_drop=self._drop)
        try:
            async with contextlib.aclosing(stream) as events:
                async for event in events:
                    self.received(event)
        except errors.BadRequest as exc:
            if self.cursor is not None:  # the only thing of ours it can refuse
                raise _CursorLost from exc
            raise

    async def _wait_before_retry(self, failures: int) -> None:
        delay = RECONNECT_DELAYS[min(failures - 1, len(RECONNECT_DELAYS) - 1)]
        word = "offline, retrying" if failures >= OFFLINE_AFTER else "reconnecting"
        for left in range(delay, 0, -1):
            self.app.stream_state = f"{word} in {left}s"
            await asyncio.sleep(1)
        self.app.stream_state = "reconnecting"

    # -- the SDK's callbacks -------------------------------------------------------------

    def _connected(self) -> None:
        self.app.stream_state = "live"
        if not self._connected_with_cursor:
            for target, _ in self._live_subscribers():
                target.post_message(self.Resync())
        # A resume inside the SDK continues from a cursor once one was received.
        self._connected_with_cursor = self.cursor is not None

    def _drop(self, _reason: str) -> None:
        self.app.stream_state = "reconnecting"
        self._connected_with_cursor = self.cursor is not None

    # -- coalescing ----------------------------------------------------------------------

    def received(self, event: Event) -> None:
        """One event from the coordinator: kept for the next batch (merged with an earlier
        one of the same kind and object)."""
        self.count += 1
        if event.cursor:
            self.cursor = event.cursor
        key = (event.kind, event.object_id)
        earlier = self._pending.pop(key, None)
        if earlier is not None:
            event.payload = {**earlier.payload, **event.payload}
        self._pending[key] = event
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.app.set_timer(TICK, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._pending = list(self._pending.values()), {}
        if not batch:
            return
        self.app.last_update = self.app.clock()
        for target, kinds in self._live_subscribers():
            wanted = batch if kinds is None else [e for e in batch if e.kind in kinds]
            if wanted:
                target.post_message(self.Events(wanted))
