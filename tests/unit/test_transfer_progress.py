"""Transfer progress bars in batch mode: drawn on a terminal's stderr, silent otherwise."""

from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console

from mitosis_tui.commands.files import transfer_progress


def _session(terminal: bool, as_json: bool = False):
    stderr = io.StringIO()
    console = Console(file=stderr, force_terminal=terminal, width=100)
    return SimpleNamespace(out=SimpleNamespace(diagnostics=console, as_json=as_json)), stderr


def test_a_terminal_gets_a_progress_bar():
    """Advances (and the rewinds of retried bytes) drive one bar, drawn on stderr."""
    session, stderr = _session(terminal=True)
    with transfer_progress(session, 1000, "data.bin") as advance:
        advance(600)
        advance(-100)
        advance(500)
    assert "data.bin" in stderr.getvalue()


def test_pipes_and_json_get_no_progress():
    """Scripts reading stderr (or JSON output) never see bars: there is no callback at all."""
    for terminal, as_json in ((False, False), (True, True)):
        session, stderr = _session(terminal, as_json)
        with transfer_progress(session, 1000, "data.bin") as advance:
            assert advance is None
        assert stderr.getvalue() == ""
