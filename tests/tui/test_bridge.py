"""The plain pieces under the TUI: URL normalising and the line streams of the command line."""

from __future__ import annotations

from mitosis_tui.command_bridge import LineStream
from mitosis_tui.connection import normalize_url


def test_urls_are_normalised_as_people_type_them():
    """host:port gets http://; trailing slashes go; full URLs stay."""
    assert normalize_url("127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert normalize_url(" https://mitosis.example.org/ ") == "https://mitosis.example.org"


def test_line_stream_hands_over_whole_lines_unchanged():
    """Partial writes are joined; blank lines and spacing survive; the tail is flushed."""
    lines: list[str] = []
    stream = LineStream(lines.append)
    stream.write("name   lab\n\n  indented")
    stream.write(" more\nlast")
    assert lines == ["name   lab", "", "  indented more"]
    stream.finish()
    assert lines[-1] == "last"
