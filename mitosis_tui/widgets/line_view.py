"""The base of the line-API views (the Tasks table, the Logs view): styles resolved once per
style change instead of once per line.

``Widget.rich_style`` walks the ancestors' backgrounds on every call (about 0.2 ms here),
and a view draws 40 lines a frame. :class:`LineView` keeps the base style and the component
styles until Textual says styles changed, or focus moved (``:focus`` rules). It is a
``ScrollView`` subclass, not a mixin, so the ``ScrollView`` CSS rules still apply.
"""

from __future__ import annotations

from rich.style import Style
from textual.scroll_view import ScrollView

__all__ = ["LineView"]


class LineView(ScrollView):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._styles: dict[str, Style] = {}

    def style_of(self, name: str = "") -> Style:
        """The widget's base style (``""``) or a component's (``"x--y"``), cached."""
        style = self._styles.get(name)
        if style is None:
            style = self.rich_style if not name else self.get_component_rich_style(name)
            self._styles[name] = style
        return style

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()

    def on_focus(self) -> None:
        self._styles.clear()
        self.refresh()

    def on_blur(self) -> None:
        self._styles.clear()
        self.refresh()
