"""Attempt trees made ahead and removed behind (mitosis_worker/trees.py): every attempt gets
a tree never used before, laid out as X1 says, and nothing of an ended one reaches the next;
with the tree keeper process doing the disk's work, and without it."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from mitosis_worker.trees import AttemptDirs, Trees


@pytest.fixture(params=["keeper", "in-process"])
def trees(request, tmp_path):
    keeper = Trees(tmp_path, ahead=2, keeper=request.param == "keeper")
    keeper.start()
    yield keeper
    keeper.close()


def eventually(check, seconds: float = 10.0) -> None:
    """``check()`` holds within ``seconds`` (the keeper works at its own pace)."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.01)


def placed(trees: Trees, base: Path, name: str) -> AttemptDirs:
    dirs = AttemptDirs.at(base / name)
    eventually(lambda: trees.place(dirs.root))
    trees.tidy()
    return dirs


def keeper_of_this_process() -> psutil.Process:
    (keeper,) = [p for p in psutil.Process().children() if "treekeeper" in " ".join(p.cmdline())]
    return keeper


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
        eventually(lambda: os.fstat(held).st_nlink == 0)  # removed, the link not followed
    finally:
        os.close(held)
    assert (tmp_path / "outside" / "keep.txt").read_text() == "not the task's"
    eventually(lambda: os.listdir(tmp_path / ".trash") == [])


def test_without_a_ready_tree_the_caller_makes_its_own(tmp_path):
    trees = Trees(tmp_path, ahead=1, keeper=False)
    trees.start()
    assert trees.place(tmp_path / "task.1")
    assert trees.place(tmp_path / "task.2") is False  # used up until the next tidy
    assert not (tmp_path / "task.2").exists()
    trees.tidy()
    assert trees.place(tmp_path / "task.2")
    trees.close()


def test_spares_keep_coming_and_the_trash_goes(trees, tmp_path):
    for n in range(6):  # three times the spares
        dirs = placed(trees, tmp_path, f"task.{n}")
        assert sorted(os.listdir(dirs.work)) == ["exec", "resources", "result"]
        trees.discard(dirs.root)
    trees.tidy()
    eventually(lambda: len(os.listdir(tmp_path / ".spare")) == 2)
    eventually(lambda: os.listdir(tmp_path / ".trash") == [])


def test_a_worker_whose_keeper_died_makes_and_removes_its_trees_itself(tmp_path):
    trees = Trees(tmp_path, ahead=2)
    trees.start()
    try:
        keeper = keeper_of_this_process()
        keeper.send_signal(signal.SIGKILL)
        keeper.wait(10)
        for n in range(3):
            dirs = placed(trees, tmp_path, f"task.{n}")
            assert sorted(os.listdir(dirs.work)) == ["exec", "resources", "result"]
            trees.discard(dirs.root)
        trees.tidy()
        assert os.listdir(tmp_path / ".trash") == []
    finally:
        trees.close()
    assert os.listdir(tmp_path / ".spare") == []


def test_the_keeper_outlives_a_ctrl_c_and_ends_with_the_worker(tmp_path):
    """SIGINT and SIGTERM reach the worker's whole process group: the keeper stays for the
    daemon's graceful stop and ends once its orders are done."""
    trees = Trees(tmp_path, ahead=2)
    trees.start()
    keeper = keeper_of_this_process()
    placed(trees, tmp_path, "task.0")  # and a spare ordered: the keeper is up once it is made
    eventually(lambda: len(os.listdir(tmp_path / ".spare")) == 2)
    keeper.send_signal(signal.SIGINT)
    keeper.send_signal(signal.SIGTERM)
    dirs = placed(trees, tmp_path, "task.1")
    trees.discard(dirs.root)
    trees.tidy()
    eventually(lambda: os.listdir(tmp_path / ".trash") == [])
    assert keeper.is_running()
    trees.close()
    assert not keeper.is_running()
    assert os.listdir(tmp_path / ".spare") == os.listdir(tmp_path / ".trash") == []


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


def test_the_keeper_ends_when_its_worker_is_killed(tmp_path):
    """A worker killed with -9 closes nothing: its keeper sees its pipe end and goes too."""
    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from mitosis_worker.trees import Trees;"
            "Trees(Path(sys.argv[1]), ahead=2).start(); print('started', flush=True);"
            "time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout.readline() == "started\n"
        (keeper,) = psutil.Process(worker.pid).children()
        worker.kill()
        worker.wait(10)
        keeper.wait(10)  # psutil.TimeoutExpired if it stayed
    finally:
        worker.kill()
        worker.wait()
