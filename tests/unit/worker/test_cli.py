"""The worker's command line refuses settings it could never work with, before registering."""

from __future__ import annotations

from mitosis_worker import cli


def test_a_work_dir_that_cannot_be_created_stops_the_worker_at_start(tmp_path, capsys):
    """A path under a regular file: exit 2 naming the option, no coordinator contacted."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code = cli.main(["-c", "http://127.0.0.1:9", "--work-dir", str(blocker / "work")])
    assert code == 2
    assert "option 'work_dir'" in capsys.readouterr().err


def test_a_missing_work_dir_is_created(tmp_path):
    """A fresh node: the directory (and its parents) appear, and nothing else is left."""
    work = tmp_path / "deep" / "work"
    cli.prepare_work_dir(str(work))
    assert work.is_dir()
    assert list(work.iterdir()) == []
