"""The Logs view (``l``): a task's output, live, then its archived copy once it has ended.

It follows ``GET /api/tasks/{uuid}/logs?follow=true`` in a worker: first the lines the
coordinator keeps, then new ones as the worker ships them, until the task ends; a marker
says where the live stream ended. When the task has ended and no live line was kept (they
expire an hour after the end, or the worker could not ship them), the archived ``std-log``
artifact is shown instead, with the same reader ``tasks logs`` uses
(:mod:`mitosis_tui.commands.live`). Lines arrive in bursts; they are added to the view at
most every ``FLUSH`` seconds, so a flood of output never starves the keyboard.

Keys: ``f`` follow (scrolling up pauses it, End resumes), ``w`` wrap, ``t`` timestamps (when
the coordinator received each line), ``/`` search, ``n``/``N`` next/previous match, ``s``
save the kept lines to a file, Esc/``q`` back.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, cast

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from mitosis_sdk.schemas import TaskInfo
from mitosis_sdk.schemas.events import EventKind
from mitosis_tui.commands.live import STD_LOG, archived_lines, archived_log
from mitosis_tui.live import LiveStream
from mitosis_tui.screens.forms import FormScreen, Invalid
from mitosis_tui.widgets.log_view import MAX_LINES, LogEntry, LogView
from mitosis_tui.widgets.task_columns import short_id, state_text
from mitosis_tui.workers import api_work

if TYPE_CHECKING:
    from mitosis_tui.app import MitosisApp

FLUSH = 0.1


class SaveLogForm(FormScreen[Path]):
    TITLE_TEXT = "Save the kept lines to a file"

    def __init__(self, default: str) -> None:
        super().__init__()
        self.default = default

    def fields(self) -> ComposeResult:
        yield from self.field("File", Input(self.default, id="log-path"))

    def result(self) -> Path:
        text = self.value("#log-path").strip()
        if not text:
            raise Invalid("a file name is needed")
        path = Path(text).expanduser()
        if path.is_dir():
            raise Invalid(f"{path} is a directory")
        return path


class LogsScreen(Screen[None]):
    BINDINGS = [
        Binding("escape,q", "close", "Back"),
        Binding("f", "toggle_follow", "Follow"),
        Binding("w", "toggle_wrap", "Wrap"),
        Binding("t", "toggle_timestamps", "Times", tooltip="Show when each line arrived"),
        Binding("slash", "search", "Search", key_display="/"),
        Binding("n", "find(True)", "Next", tooltip="Next match of the search"),
        Binding("N", "find(False)", "Previous", show=False, tooltip="Previous match"),
        Binding("s", "save", "Save", tooltip="Save the kept lines to a file"),
    ]

    def __init__(self, task: uuid.UUID, info: TaskInfo | None = None) -> None:
        super().__init__()
        self.task_id = task
        self.info = info
        self.ended = False
        self.live_lines = 0
        self._buffer: list[LogEntry] = []
        self._flush_scheduled = False

    @property
    def mitosis(self) -> MitosisApp:
        return cast("MitosisApp", self.app)

    @property
    def view(self) -> LogView:
        return self.query_one(LogView)

    def compose(self) -> ComposeResult:
        yield Static(id="logs-header")
        yield LogView(id="log-view")
        yield Input(placeholder="search (Enter finds, Esc closes)", id="log-search", compact=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.mitosis.live.subscribe(self, {EventKind.TASK_STATE})
        self._show_header()
        self.view.focus()
        self.follow()

    def on_unmount(self) -> None:
        self.mitosis.live.unsubscribe(self)

    # -- the header ----------------------------------------------------------------------

    def _show_header(self) -> None:
        view = self.view
        parts = [short_id(self.task_id)]
        if self.info is not None:
            parts.append(f"{self.info.group}#{self.info.seq} {state_text(self.info)}")
        parts.append("ended" if self.ended else "live")
        count = f"{view.output_lines:,} line{'' if view.output_lines == 1 else 's'}"
        if view.dropped:
            count += f" (first {view.dropped:,} dropped)"
        parts.append(count)
        flags = ["following" if view.follow else "paused, End follows"]
        if view.wrap:
            flags.append("wrap")
        if view.timestamps:
            flags.append("times")
        if view.pattern:
            flags.append(f"/{view.pattern}")
        parts.append(" ".join(flags))
        self.query_one("#logs-header", Static).update(" │ ".join(parts))

    def on_live_stream_events(self, message: LiveStream.Events) -> None:
        if any(e.object_id == str(self.task_id) for e in message.events):
            self.load_info()

    @api_work(group="logs-info")
    async def load_info(self) -> None:
        self.info = await self.mitosis.call(lambda c: c.get_task(self.task_id))
        self._show_header()

    def on_log_view_follow_changed(self, _message: LogView.FollowChanged) -> None:
        self._show_header()

    # -- reading -------------------------------------------------------------------------

    def _add(self, entry: LogEntry) -> None:
        self._buffer.append(entry)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.set_timer(FLUSH, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._buffer = self._buffer, []
        self.view.append(batch)
        self._show_header()

    @api_work(group="log-stream")
    async def follow(self) -> None:
        async def read(client) -> None:
            stream = client.follow_logs(self.task_id, follow=True)
            async with contextlib.aclosing(stream) as lines:
                async for line in lines:
                    self.live_lines += 1
                    self._add(LogEntry(line.stream, line.text, line.at))

        await self.mitosis.call(read)
        try:  # the marker and the header's "ended" go on screen together
            self.info = await self.mitosis.call(lambda c: c.get_task(self.task_id))
            self.ended = self.info.state.terminal
        finally:
            self._add(LogEntry("marker", "── live stream ended ──"))
        if self.ended and not self.live_lines:
            await self._archived()
        self._flush()

    async def _archived(self) -> None:
        async def read(client) -> tuple[bool, list[LogEntry]]:
            async with archived_log(client, self.task_id) as archive:
                if archive is None:
                    return False, []
                return True, await asyncio.to_thread(_read_archive, archive)

        found, entries = await self.mitosis.call(read)
        if not found:
            self._add(LogEntry("marker", f"no live lines are kept and the task has no {STD_LOG}"))
            return
        self._add(LogEntry("marker", f"── archived {STD_LOG} ──"))
        for entry in entries:
            self._add(entry)
        self._add(LogEntry("marker", f"── end of the archived {STD_LOG} ──"))

    # -- keys ----------------------------------------------------------------------------

    def action_close(self) -> None:
        search = self.query_one("#log-search", Input)
        if search.has_class("-open"):
            search.remove_class("-open")
            self.view.focus()
            return
        self.dismiss(None)

    def action_toggle_follow(self) -> None:
        self.view.set_follow(not self.view.follow)
        self._show_header()

    def action_toggle_wrap(self) -> None:
        self.view.set_wrap(not self.view.wrap)
        self._show_header()

    def action_toggle_timestamps(self) -> None:
        self.view.set_timestamps(not self.view.timestamps)
        self._show_header()

    def action_search(self) -> None:
        search = self.query_one("#log-search", Input)
        search.add_class("-open")
        search.value = self.view.pattern
        search.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        event.input.remove_class("-open")
        self.view.focus()
        self._find(event.value, forward=True)

    def action_find(self, forward: bool) -> None:
        if not self.view.pattern:
            self.action_search()
            return
        self._find(self.view.pattern, forward)

    def _find(self, pattern: str, forward: bool) -> None:
        if pattern and not self.view.find(pattern, forward):
            self.notify(f"{pattern!r} is not in the kept lines.", severity="warning", markup=False)
        self._show_header()

    def action_save(self) -> None:
        default = f"{self.task_id}.log"
        self.app.push_screen(SaveLogForm(default), self._save)

    def _save(self, path: Path | None) -> None:
        if path is not None:
            self.save(path)

    @api_work(group="log-save")
    async def save(self, path: Path) -> None:
        lines = self.view.lines()
        try:
            await asyncio.to_thread(_write_lines, path, lines)
        except OSError as exc:
            self.notify(f"Cannot save {path}: {exc.strerror or exc}", severity="error")
            return
        note = f" (the oldest {self.view.dropped:,} were not kept)" if self.view.dropped else ""
        self.notify(f"Saved {len(lines):,} lines to {path}{note}.", markup=False)


def _read_archive(archive: Path) -> list[LogEntry]:
    """Both streams of a std-log archive, the newest ``MAX_LINES`` of them."""
    kept: deque[LogEntry] = deque(maxlen=MAX_LINES)
    for stream in ("stdout", "stderr"):
        kept.extend(LogEntry(stream, text) for text in archived_lines(archive, stream))
    return list(kept)


def _write_lines(path: Path, lines: list[str]) -> None:
    with path.open("w", encoding="utf-8") as file:
        for line in lines:
            file.write(line + "\n")
