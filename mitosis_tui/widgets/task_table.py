"""The Tasks table: a virtual, line-API table over a query of any size.

Only the rows on screen are drawn (Textual's line API: one ``render_line`` per visible line),
so 100,000 tasks cost no more than 20. The rows come from a :class:`RowSource` (the pane and
its :class:`~mitosis_tui.task_window.TaskWindow`); a row it does not hold yet is drawn as a
dim placeholder, and the table asks for it with :class:`TaskTable.NeedRows` whenever what is
visible changes (scrolling, resizing, a new total). Line 0 is the header, which stays put.

Keys: arrows (and ``j``/``k``), PgUp/PgDn, Home/End move the cursor; clicking a row moves it
there; clicking a sortable header (every column but UUID, COMMAND, TAGS, LABELS and PHASE)
posts :class:`TaskTable.HeaderClicked`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Protocol

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip

from mitosis_sdk.schemas import TaskInfo, TaskSort, TaskState
from mitosis_tui.widgets.line_view import LineView
from mitosis_tui.widgets.task_columns import GAP, MARK_WIDTH, Column, layout

__all__ = ["RowSource", "TaskTable"]


class RowSource(Protocol):
    total: int | None

    def row(self, index: int) -> TaskInfo | None: ...

    def is_selected(self, task: uuid.UUID) -> bool: ...

    def now(self) -> datetime: ...


def _fit(text: str, width: int, right: bool = False) -> str:
    """Exactly ``width`` cells: cut with an ellipsis, or padded (on the left if ``right``)."""
    text = text.replace("\n", "⏎").replace("\t", " ")
    length = cell_len(text)
    if length > width:
        return set_cell_size(text, width - 1) + "…" if width > 1 else set_cell_size(text, width)
    pad = " " * (width - length)
    return pad + text if right else text + pad


class TaskTable(LineView, can_focus=True):
    COMPONENT_CLASSES = {
        "task-table--header",
        "task-table--cursor",
        "task-table--selected",
        "task-table--placeholder",
        *(f"task-table--{state}" for state in TaskState),
    }

    BINDINGS = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "first", "First task", show=False),
        Binding("end", "last", "Last task", show=False),
    ]

    # Moving the cursor redraws two lines itself; a repainting reactive would redraw all.
    cursor_row: reactive[int] = reactive(0, init=False, repaint=False)

    class NeedRows(Message):
        """Rows ``first..last`` are (or are about to be) on screen."""

        def __init__(self, first: int, last: int) -> None:
            super().__init__()
            self.first, self.last = first, last

    class CursorMoved(Message):
        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    class HeaderClicked(Message):
        def __init__(self, column: Column) -> None:
            super().__init__()
            self.column = column

    def __init__(self, source: RowSource, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.source = source
        self.sort: tuple[TaskSort, bool] = (TaskSort.CREATED, True)  # (column, descending)
        self.empty_text = ""
        self._columns: list[tuple[Column, int]] = []
        self._columns_width = -1

    # -- geometry ------------------------------------------------------------------------

    @property
    def visible_rows(self) -> int:
        return max(1, self.size.height - 1)

    @property
    def first_visible(self) -> int:
        return int(self.scroll_y)

    def columns(self) -> list[tuple[Column, int]]:
        width = self.size.width
        if width != self._columns_width:
            self._columns, self._columns_width = layout(width), width
        return self._columns

    def rows_changed(self) -> None:
        """The source's total or rows changed: resize, keep the cursor inside, redraw."""
        total = self.source.total or 0
        self.virtual_size = Size(self.size.width, total + 1)
        if total and self.cursor_row >= total:
            self.cursor_row = total - 1
        self.refresh()
        self._ask_for_rows()

    def _ask_for_rows(self) -> None:
        first = self.first_visible
        self.post_message(self.NeedRows(first, first + self.visible_rows - 1))

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if round(old) != round(new):
            self._ask_for_rows()

    def on_resize(self, _event: events.Resize) -> None:
        self.virtual_size = Size(self.size.width, (self.source.total or 0) + 1)
        self._ask_for_rows()

    # -- the cursor ----------------------------------------------------------------------

    def move_cursor(self, index: int, *, follow: bool = True) -> None:
        """Put the cursor on row ``index``, scrolling just enough to show it."""
        total = self.source.total or 0
        index = max(0, min(index, total - 1)) if total else 0
        if index != self.cursor_row:
            self.refresh_lines(self.cursor_row + 1)
            self.cursor_row = index
            self.refresh_lines(index + 1)
            self.post_message(self.CursorMoved(index))
        if follow:
            top = self.first_visible
            if index < top:
                self._scroll(index)
            elif index >= top + self.visible_rows:
                self._scroll(index - self.visible_rows + 1)

    def _scroll(self, y: float) -> None:
        # Forced: right after the rows change, the scroll bar allowing it may not be laid out.
        self.scroll_to(y=y, animate=False, immediate=True, force=True)

    def shift(self, delta: int) -> None:
        """Rows were inserted (or removed) above the cursor: keep the same rows in view."""
        self.cursor_row = max(0, self.cursor_row + delta)
        self._scroll(max(0, self.scroll_y + delta))
        self.refresh()

    def action_move(self, delta: int) -> None:
        self.move_cursor(self.cursor_row + delta)

    def action_page(self, direction: int) -> None:
        step = self.visible_rows * direction
        self._scroll(max(0, self.scroll_y + step))
        self.move_cursor(self.cursor_row + step)

    def action_first(self) -> None:
        self.move_cursor(0)

    def action_last(self) -> None:
        self.move_cursor((self.source.total or 1) - 1)

    def on_click(self, event: events.Click) -> None:
        if event.y == 0:
            self._header_click(event.x)
            return
        self.focus()
        self.move_cursor(self.first_visible + event.y - 1)

    def _header_click(self, x: int) -> None:
        start = MARK_WIDTH
        for column, width in self.columns():
            if start <= x < start + width and column.sort is not None:
                self.post_message(self.HeaderClicked(column))
                return
            start += width + GAP

    # -- drawing -------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y == 0:
            return self._header(width)
        index = self.first_visible + y - 1
        total = self.source.total
        if total == 0 and y == 1 and self.empty_text:
            style = self.style_of("task-table--placeholder")
            return Strip([Segment(_fit(f"  {self.empty_text}", width), style)], width)
        if total is None or index >= total:
            return Strip.blank(width, self.style_of())
        task = self.source.row(index)
        if task is None:
            style = self.style_of("task-table--placeholder")
            return Strip([Segment(_fit("  …", width), style)], width)
        return self._row(task, index == self.cursor_row, width)

    def _header(self, width: int) -> Strip:
        style = self.style_of("task-table--header")
        sort, descending = self.sort
        cells = []
        for column, cell_width in self.columns():
            title = column.title
            if column.sort == sort:  # the arrow stays when the title has to be cut for it
                title = title[: cell_width - 1] + ("▼" if descending else "▲")
            cells.append(_fit(title, cell_width, column.right))
        text = " " * MARK_WIDTH + (" " * GAP).join(cells)
        return Strip([Segment(_fit(text, width), style)], width)

    def _row(self, task: TaskInfo, is_cursor: bool, width: int) -> Strip:
        base = self.style_of()
        if is_cursor:
            base += self.style_of("task-table--cursor")
        selected = self.source.is_selected(task.uuid)
        mark_style = base + self.style_of("task-table--selected")
        segments = [Segment("● " if selected else "  ", mark_style if selected else base)]
        now = self.source.now()
        gap = Segment(" " * GAP, base)
        for number, (column, cell_width) in enumerate(self.columns()):
            if number:
                segments.append(gap)
            style = base
            if column.styled:
                style = self._state_style(task.state, base, is_cursor)
            segments.append(Segment(_fit(column.cell(task, now), cell_width, column.right), style))
        used = sum(segment.cell_length for segment in segments)
        if used < width:
            segments.append(Segment(" " * (width - used), base))
        return Strip(segments, width).crop(0, width)

    def _state_style(self, state: TaskState, base: Style, is_cursor: bool) -> Style:
        state_style = self.style_of(f"task-table--{state}")
        if is_cursor:  # keep the cursor's background, take the state's colour and weight
            return base + Style(color=state_style.color, bold=state_style.bold)
        return base + state_style
