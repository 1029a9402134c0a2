"""Attempt directories (FEATURES X1): their layout, made ahead and removed behind.

Every attempt gets a tree of its own, never used before: ``work/`` (the task's working
directory) with ``result/``, ``exec/`` and ``resources/`` in it, and ``std-log/`` beside it
with ``--terminal``. Making five directories and removing them again is dear on a real
disk: each takes a block that is allocated, and with ext4's ``discard`` trimmed when freed;
measured on this project's machines, 0.55 ms of the daemon's loop per task (0.27 ms of it
CPU), more than spawning the process.

So :class:`Trees` keeps that work off the path between a claim and its spawn: a few fresh
trees wait under ``.spare/``, and an attempt's tree is a ``rename`` of one of them into
place; an ended attempt's tree is renamed into ``.trash/`` at once. Removing the trash and
making new spares is done while a fetch is out, when the loop would only wait for the
coordinator. (A thread of its own cost more than it saved: its GIL hand-offs and wake-ups
added half a millisecond of CPU per task.) A tree is never handed out twice: a process that
outlived its attempt keeps, at most, its own old tree, on its way out in the trash, never
the next task's. Names carry the worker's pid, so workers sharing a work directory keep out
of each other's spares, and a worker that starts clears what dead ones left behind.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_MODE = 0o700


@dataclass(frozen=True, slots=True)
class AttemptDirs:
    root: Path  # everything of the attempt
    work: Path  # the task's working directory
    result: Path
    exec: Path
    resources: Path
    new_task: Path
    std_log: Path

    @classmethod
    def under(cls, base: Path, task_uuid: str, attempt: int) -> AttemptDirs:
        return cls.at(base / f"{task_uuid}.{attempt}")

    @classmethod
    def at(cls, root: Path) -> AttemptDirs:
        work = root / "work"
        return cls(
            root=root,
            work=work,
            result=work / "result",
            exec=work / "exec",
            resources=work / "resources",
            new_task=work / "new-task.json",
            std_log=root / "std-log",
        )

    def outputs(self) -> tuple[Path, Path, Path]:
        """The folders inside ``work`` that the task's variables name."""
        return (self.result, self.exec, self.resources)


def make_tree(dirs: AttemptDirs) -> None:
    """The tree as a task finds it, without ``std-log`` (made per attempt when needed)."""
    for path in (dirs.root, dirs.work, *dirs.outputs()):
        os.mkdir(path, mode=_MODE)


def remove_tree(root: Path) -> None:
    """Remove an attempt's tree without following any link in it.

    Most are as :func:`make_tree` left them, empty: they go with one ``rmdir`` each, by
    name relative to their opened parent, so a symlink a task put in their place is never
    followed. Anything else -- a file left behind, a link -- and the whole tree goes through
    ``rmtree``, which never follows links either."""
    try:
        _remove_empty_tree(AttemptDirs.at(root))
    except OSError:  # not empty, not all there, or not there at all
        shutil.rmtree(root, ignore_errors=True)


def _remove_empty_tree(dirs: AttemptDirs) -> None:
    """``rmdir`` the tree innermost first; OSError when any of it is not an empty
    directory."""
    root = os.open(dirs.root, _DIRECTORY)
    try:
        work = os.open(dirs.work.name, _DIRECTORY, dir_fd=root)
        try:
            for path in dirs.outputs():
                os.rmdir(path.name, dir_fd=work)
        finally:
            os.close(work)
        os.rmdir(dirs.work.name, dir_fd=root)
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(dirs.std_log.name, dir_fd=root)
    finally:
        os.close(root)
    os.rmdir(dirs.root)


class Trees:
    """Fresh attempt trees kept ready, used ones removed, while the loop has time."""

    def __init__(self, base: Path, ahead: int) -> None:
        self._spare = base / ".spare"
        self._trash = base / ".trash"
        self._ahead = ahead
        self._ready: collections.deque[Path] = collections.deque()
        self._discarded: list[Path] = []
        self._count = itertools.count()

    def start(self) -> None:
        """Clear what dead workers left, then make the first trees."""
        for folder in (self._spare, self._trash):
            folder.mkdir(mode=_MODE, parents=True, exist_ok=True)
        for entry in os.scandir(self._spare):
            if not _alive(entry.name):
                self.discard(Path(entry.path))
        self._discarded += [Path(e.path) for e in os.scandir(self._trash) if not _alive(e.name)]
        self.tidy()

    def close(self) -> None:
        """Remove the spares and whatever this worker put in the trash."""
        while self._ready:
            remove_tree(self._ready.popleft())
        self._ahead = 0
        self.tidy()

    def place(self, root: Path) -> bool:
        """Move a fresh tree to ``root``; False when none is ready (the caller makes one)."""
        while self._ready:
            try:
                os.rename(self._ready.popleft(), root)
                return True
            except FileNotFoundError:  # cleared by a worker that took us for dead
                continue
        return False

    def discard(self, root: Path) -> None:
        """Take an attempt's tree out of the way at once; :meth:`tidy` removes it."""
        trashed = self._trash / f"{os.getpid()}-{next(self._count)}"
        with contextlib.suppress(FileNotFoundError):
            os.rename(root, trashed)
            self._discarded.append(trashed)

    def tidy(self) -> None:
        """Remove the discarded trees and make fresh ones up to ``ahead``: the daemon calls
        this while a fetch is out, when the loop would wait for the coordinator anyway."""
        while self._discarded:
            remove_tree(self._discarded.pop())
        try:
            while len(self._ready) < self._ahead:
                tree = self._spare / f"{os.getpid()}-{next(self._count)}"
                make_tree(AttemptDirs.at(tree))
                self._ready.append(tree)
        except OSError as exc:  # a full disk, say: attempts make their own meanwhile
            log.warning("trees.failed: %s", exc)


def _alive(name: str) -> bool:
    """Is the worker that named this entry (``pid-n``) still running?"""
    pid = name.partition("-")[0]
    return pid.isdigit() and psutil.pid_exists(int(pid))
