"""A task's output as a scrolling view: stdout and stderr told apart, wrap and timestamps
toggles, search, follow — in bounded memory however long the log.

At most ``MAX_LINES`` lines are kept (the oldest go first and are counted in ``dropped``);
only the lines on screen are drawn (Textual's line API). With wrap off a line is one row and
the view scrolls sideways; with wrap on each line is cut into rows of the view's width,
recomputed when the width or the toggle changes (linear in the lines kept, done once).

Follow: while ``follow`` is on, new lines scroll the view to the end; scrolling up turns it
off (the view says so with :class:`LogView.FollowChanged`), and reaching the end again, or
End, turns it back on. stderr lines and markers (``── stream ended ──``) have their own
styles *and* a prefix-free text that reads the same in monochrome (stderr is also marked
with ``▌`` in the gutter).
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.strip import Strip

from mitosis_tui.widgets.line_view import LineView

__all__ = ["MAX_LINES", "LogEntry", "LogView"]

MAX_LINES = 50_000
MAX_WIDTH = 4096  # sideways scrolling stops here (a longer line is seen with wrap on)
STAMP = 9  # "HH:MM:SS "
GUTTER = 2  # "▌ " before stderr lines, "  " before stdout


@dataclass(frozen=True, slots=True)
class LogEntry:
    stream: str  # "stdout", "stderr" or "marker"
    text: str
    at: float | None = None


def _marker_count(entries) -> int:
    return sum(entry.stream == "marker" for entry in entries)


def _clean(text: str) -> str:
    return "".join(c if c >= " " or c == "\t" else "�" for c in text).expandtabs(4)


class LogView(LineView, can_focus=True):
    COMPONENT_CLASSES = {"log-view--stderr", "log-view--marker", "log-view--match"}

    BINDINGS = [
        Binding("end", "follow_end", "End (follow)", show=False),
    ]

    class FollowChanged(Message):
        def __init__(self, follow: bool) -> None:
            super().__init__()
            self.follow = follow

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.entries: deque[LogEntry] = deque(maxlen=MAX_LINES)
        self.markers = 0  # entries that are markers ("stream ended" …), not the task's output
        self.dropped = 0
        self.follow = True
        self.wrap = False
        self.timestamps = False
        self.pattern = ""
        self.match: int | None = None  # absolute number of the current match's line
        self._width = 0
        self._rows: deque[tuple[int, int]] = deque()  # wrap on: (line number, first cell)
        self._rows_width = 0
        self._scrolling = False

    # -- content -------------------------------------------------------------------------

    def append(self, entries: list[LogEntry]) -> None:
        """Add lines at the end (the oldest beyond MAX_LINES are dropped)."""
        if not entries:
            return
        first = self.dropped + len(self.entries)  # the number of the first new line
        overflow = len(self.entries) + len(entries) - MAX_LINES
        leaving = itertools.islice(self.entries, max(0, overflow))
        self.markers += _marker_count(entries) - _marker_count(leaving)
        self.entries.extend(entries)
        self.dropped = first + len(entries) - len(self.entries)
        for entry in entries:
            self._width = min(MAX_WIDTH, max(self._width, cell_len(entry.text)))
        if self.wrap and self._rows_width == self._text_width():
            for offset, entry in enumerate(entries):
                if first + offset >= self.dropped:
                    self._rows.extend(self._wrapped(first + offset, entry))
            while self._rows and self._rows[0][0] < self.dropped:
                self._rows.popleft()
        else:
            self._rows_width = 0  # rebuilt when next needed
        self._resize()
        if self.follow:
            self._scroll_end()

    @property
    def output_lines(self) -> int:
        """Kept lines of the task's output (markers left out)."""
        return len(self.entries) - self.markers

    def clear(self) -> None:
        self.entries.clear()
        self.markers = 0
        self.dropped = 0
        self._width = 0
        self._rows.clear()
        self._rows_width = 0
        self.match = None
        self._resize()

    def lines(self) -> list[str]:
        """The kept lines as shown (with timestamps when they are on), for saving."""
        return [self._prefix(entry) + entry.text for entry in self.entries]

    # -- toggles -------------------------------------------------------------------------

    def set_wrap(self, wrap: bool) -> None:
        self.wrap = wrap
        self._rows_width = 0
        self._resize()
        if self.follow:
            self._scroll_end()

    def set_timestamps(self, on: bool) -> None:
        self.timestamps = on
        self._rows_width = 0
        self._resize()

    def set_follow(self, follow: bool) -> None:
        if follow != self.follow:
            self.follow = follow
            self.post_message(self.FollowChanged(follow))
        if follow:
            self._scroll_end()

    def action_follow_end(self) -> None:
        self.set_follow(True)

    # -- search --------------------------------------------------------------------------

    def find(self, pattern: str, forward: bool = True) -> bool:
        """Move to the next (or previous) line containing ``pattern`` (any case), wrapping
        around; False when no kept line has it."""
        self.pattern = pattern
        needle = pattern.lower()
        if not needle or not self.entries:
            self.refresh()
            return False
        count = len(self.entries)
        here = (self.match - self.dropped) if self.match is not None else None
        if here is None or not 0 <= here < count:
            here = self._line_at(int(self.scroll_y)) - (1 if forward else -1)
        step = 1 if forward else -1
        for distance in range(1, count + 1):
            index = (here + step * distance) % count
            if needle in self.entries[index].text.lower():
                self.match = self.dropped + index
                self.set_follow(False)
                self._show_line(index)
                self.refresh()
                return True
        self.refresh()
        return False

    # -- geometry ------------------------------------------------------------------------

    def _prefix_width(self) -> int:
        return GUTTER + (STAMP if self.timestamps else 0)

    def _text_width(self) -> int:
        return max(10, self.size.width - self._prefix_width())

    def _wrapped(self, number: int, entry: LogEntry) -> list[tuple[int, int]]:
        width = self._text_width()
        length = len(_clean(entry.text))
        return [(number, start) for start in range(0, max(length, 1), width)]

    def _row_count(self) -> int:
        if not self.wrap:
            return len(self.entries)
        if self._rows_width != self._text_width():
            self._rows = deque(
                row
                for index, entry in enumerate(self.entries)
                for row in self._wrapped(self.dropped + index, entry)
            )
            self._rows_width = self._text_width()
        return len(self._rows)

    def _resize(self) -> None:
        width = self.size.width if self.wrap else self._width + self._prefix_width()
        self.virtual_size = Size(width, self._row_count())
        self.refresh()

    def on_resize(self) -> None:
        self._resize()
        if self.follow:  # a new height moves the end
            self._scroll_end()

    def _line_at(self, row: int) -> int:
        """The kept line (index into ``entries``) shown on ``row``."""
        if not self.wrap:
            return row
        self._row_count()
        if not self._rows:
            return 0
        row = max(0, min(row, len(self._rows) - 1))
        return self._rows[row][0] - self.dropped

    def _show_line(self, index: int) -> None:
        row = index
        if self.wrap:
            self._row_count()
            number = self.dropped + index
            row = next((r for r, (n, _) in enumerate(self._rows) if n == number), 0)
        self._jump_to(max(0, row - self.size.height // 2))

    def _jump_to(self, y: int) -> None:
        self._scrolling = True
        try:
            self.scroll_to(y=y, animate=False, immediate=True, force=True)
        finally:
            self._scrolling = False

    def _scroll_end(self) -> None:
        # After the next refresh, when the new height is laid out (as Textual's Log does);
        # forced, as the scroll bar that allows scrolling may not be there yet.
        self.scroll_end(animate=False, x_axis=False, force=True)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if self._scrolling:
            return
        if new < old and new < self.max_scroll_y and self.follow:
            self.set_follow(False)  # the user scrolled up (not a clamp to a new end)
        elif new >= self.max_scroll_y and not self.follow and new > old:
            self.set_follow(True)  # back at the end: follow again

    # -- drawing -------------------------------------------------------------------------

    def _prefix(self, entry: LogEntry) -> str:
        if not self.timestamps:
            return ""
        if entry.at is None:
            return " " * STAMP
        return f"{datetime.fromtimestamp(entry.at):%H:%M:%S} "

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        row = scroll_y + y
        if row >= self._row_count():
            return Strip.blank(width, self.style_of())
        if self.wrap:
            number, start = self._rows[row]
            index = number - self.dropped
            entry = self.entries[index]
            text = _clean(entry.text)[start : start + self._text_width()]
            first = start == 0
        else:
            index = row
            entry = self.entries[index]
            text, first = _clean(entry.text), True
        strip = self._line_strip(entry, text, first, self.dropped + index == self.match)
        if not self.wrap:
            strip = strip.crop_extend(scroll_x, scroll_x + width, self.style_of())
        return strip.crop_extend(0, width, self.style_of())

    def _line_strip(self, entry: LogEntry, text: str, first: bool, current: bool) -> Strip:
        base = self.style_of()
        if entry.stream == "stderr":
            style = base + self.style_of("log-view--stderr")
            gutter = "▌ " if first else "  "
        elif entry.stream == "marker":
            style = base + self.style_of("log-view--marker")
            gutter = "  "
        else:
            style, gutter = base, "  "
        stamp = self._prefix(entry) if first else " " * (STAMP if self.timestamps else 0)
        segments = [Segment(gutter, style), Segment(stamp, base + Style(dim=True))]
        segments += self._highlighted(text, style, current)
        return Strip(segments)

    def _highlighted(self, text: str, style: Style, current: bool) -> list[Segment]:
        needle = self.pattern.lower()
        if not needle or needle not in text.lower():
            return [Segment(text, style)]
        match = style + self.style_of("log-view--match")
        if current:
            match += Style(reverse=True)
        segments, lower, start = [], text.lower(), 0
        while (found := lower.find(needle, start)) >= 0:
            segments.append(Segment(text[start:found], style))
            segments.append(Segment(text[found : found + len(needle)], match))
            start = found + len(needle)
        segments.append(Segment(text[start:], style))
        return segments
