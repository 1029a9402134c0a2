"""Attempt trees made ahead and removed behind (mitosis_worker/trees.py): every attempt gets
a tree never used before, laid out as X1 says, and nothing of an ended one reaches the next."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mitosis_worker.trees import AttemptDirs, Trees


@pytest.fixture
def trees(tmp_path):
    keeper = Trees(tmp_path, ahead=2)
    keeper.start()
    yield keeper
    keeper.close()


def placed(trees: Trees, base: Path, name: str) -> AttemptDirs:
    dirs = AttemptDirs.at(base / name)
    assert trees.place(dirs.root)
    trees.tidy()
    return dirs


def test_a_placed_tree_is_empty_private_and_laid_out_for_the_task(trees, tmp_path):
    dirs = placed(trees, tmp_path, "task.1")
    assert sorted(os.listdir(dirs.root)) == ["work"]
    assert sorted(os.listdir(dirs.work)) == ["exec", "resources", "result"]
    for folder in (dirs.root, dirs.work, *dirs.outputs()):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert not any(any(folder.iterdir()) for folder in dirs.outputs())


def test_an_ended_tree_never_comes_back_and_is_removed(trees, tmp_path):
    """A process still in the old tree (its working directory, say) keeps that tree, which
    is deleted; the next attempt's tree is another directory."""
    old = placed(trees, tmp_path, "task.1")
    (old.result / "out.txt").write_text("of the first task")
    (old.work / "escape").symlink_to(tmp_path / "outside")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "keep.txt").write_text("not the task's")
    held = os.open(old.work, os.O_RDONLY | os.O_DIRECTORY)
    try:
        trees.discard(old.root)
        assert not old.root.exists()
        new = placed(trees, tmp_path, "task.2")
        assert os.fstat(held).st_ino != new.work.stat().st_ino
        assert not any(new.result.iterdir())
        assert os.fstat(held).st_nlink == 0  # removed, the link not followed
    finally:
        os.close(held)
    assert (tmp_path / "outside" / "keep.txt").read_text() == "not the task's"
    assert os.listdir(tmp_path / ".trash") == []


def test_without_a_ready_tree_the_caller_makes_its_own(tmp_path):
    trees = Trees(tmp_path, ahead=1)
    trees.start()
    assert trees.place(tmp_path / "task.1")
    assert trees.place(tmp_path / "task.2") is False  # used up until the next tidy
    assert not (tmp_path / "task.2").exists()
    trees.tidy()
    assert trees.place(tmp_path / "task.2")


def test_start_clears_what_dead_workers_left_and_close_what_it_made(tmp_path):
    spare = tmp_path / ".spare"
    for name in ("999999999-0", f"{os.getppid()}-0"):  # a dead pid, a live one
        (spare / name / "work").mkdir(parents=True)
    keeper = Trees(tmp_path, ahead=2)
    keeper.start()
    try:
        assert len(os.listdir(spare)) == 3  # the live one's and two of ours
        assert not (spare / "999999999-0").exists()
        assert (spare / f"{os.getppid()}-0").exists()
    finally:
        keeper.close()
    assert os.listdir(spare) == [f"{os.getppid()}-0"]
    assert os.listdir(tmp_path / ".trash") == []
