"""Attempt directories (FEATURES X1): their layout, made ahead and removed behind.

Every attempt gets a tree of its own, never used before: ``work/`` (the task's working
directory) with ``result/``, ``exec/`` and ``resources/`` in it, and ``std-log/`` beside it
with ``--terminal``. Making five directories and removing them again is dear on a real
disk: each takes a block that is allocated, and with ext4's ``discard`` trimmed when freed;
measured on this project's machines, 0.55 ms of the daemon's loop per task (0.27 ms of it
CPU), more than spawning the process.

So :class:`Trees` keeps that work off the daemon's loop. A few fresh trees wait under
``.spare/``, and an attempt's tree is a ``rename`` of one of them into place; an ended
attempt's tree is renamed into ``.trash/`` at once. Removing the trash and making new spares
is the work of the *tree keeper* (``mitosis_worker.treekeeper``), a small process of the
worker's own that takes its orders over a pipe: the loop writes one line of orders per fetch
and never waits for the disk. Where ``mkdir`` costs 45-90 µs of CPU and ``rmdir`` 125 µs
of wall time (ext4 with ``discard``, on a small VM), that moved 0.7-1.3 ms of CPU per task
off the daemon's loop to the keeper, which runs beside it on another core, and a tree a task
filled with 20,000 files (a quarter of a second to remove) no longer stalls every other task
while it goes. (A thread did not do it: each ``mkdir`` and ``rmdir`` is a GIL hand-off, and
the contention cost the loop more than the thread took off it.) Without its keeper -- it
could not start, or it died -- the loop does the work itself between fetches, as it did
before there was one.

A tree is never handed out twice: a process that outlived its attempt keeps, at most, its own
old tree, on its way out in the trash, never the next task's. Names carry the worker's pid,
so workers sharing a work directory keep out of each other's spares, and a worker that starts
clears what dead ones left behind.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_MODE = 0o700
MAX_SPARES = 64  # trees kept ready, whatever the slots
KEEPER_EXIT = 30.0  # seconds the keeper has to finish its orders when the worker stops


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
    """Fresh attempt trees kept ready and used ones removed, by the keeper process (or, with
    ``keeper=False`` or none running, by the caller of :meth:`tidy`)."""

    def __init__(self, base: Path, ahead: int, *, keeper: bool = True) -> None:
        self._spare = base / ".spare"
        self._trash = base / ".trash"
        self._ahead = min(ahead, MAX_SPARES)
        self._wants_keeper = keeper
        self._keeper: subprocess.Popen | None = None
        self._pipe: IO[bytes]  # the keeper's standard input, while there is a keeper
        self._orders = bytearray()  # for the keeper, written as its pipe takes them
        self._ready: collections.deque[Path] = collections.deque()  # made or ordered
        self._discarded: list[Path] = []  # in the trash, not yet ordered removed
        self._prefix = f"{os.getpid()}-"
        self._count = itertools.count()

    @property
    def keeper_pid(self) -> int | None:
        return self._keeper.pid if self._keeper is not None else None

    def start(self) -> None:
        """Clear what dead workers left, make the first trees here, start the keeper."""
        for folder in (self._spare, self._trash):
            folder.mkdir(mode=_MODE, parents=True, exist_ok=True)
        for entry in os.scandir(self._spare):
            if not _alive(entry.name):
                self.discard(Path(entry.path))
        self._discarded += [Path(e.path) for e in os.scandir(self._trash) if not _alive(e.name)]
        self._tidy_here()
        if self._wants_keeper:
            self._start_keeper()

    def close(self) -> None:
        """Let the keeper finish its orders, then remove every tree of this worker's that
        is left: spares, and trash whose removal was never ordered or never carried out."""
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            with contextlib.suppress(OSError):
                self._pipe.close()
            try:
                keeper.wait(KEEPER_EXIT)
            except subprocess.TimeoutExpired:
                keeper.kill()
                keeper.wait()
        self._ready.clear()
        self._discarded.clear()
        for folder in (self._spare, self._trash):
            for entry in os.scandir(folder):
                if entry.name.startswith(self._prefix):
                    remove_tree(Path(entry.path))

    def place(self, root: Path) -> bool:
        """Move a fresh tree to ``root``; False when none is ready (the caller makes one)."""
        while self._ready:
            tree = self._ready.popleft()
            try:
                os.rename(tree, root)
                return True
            except FileNotFoundError:
                # The keeper works in order: when the next tree is there, this one never
                # will be (cleared by a worker that took us for dead); else it is behind.
                if self._keeper is not None and not (self._ready and self._ready[0].exists()):
                    self._ready.appendleft(tree)
                    return False
        return False

    def discard(self, root: Path) -> None:
        """Take an attempt's tree out of the way at once; :meth:`tidy` has it removed."""
        trashed = self._trash / f"{self._prefix}{next(self._count)}"
        with contextlib.suppress(FileNotFoundError):
            os.rename(root, trashed)
            self._discarded.append(trashed)

    def tidy(self) -> None:
        """Order the discarded trees removed and spares made up to ``ahead``: one write to
        the keeper, which the daemon makes while a fetch is out. Without a keeper the work
        is done here and now."""
        if self._keeper is None:
            self._tidy_here()
            return
        for tree in self._discarded:
            self._orders += b"R" + os.fsencode(tree) + b"\0"
        self._discarded.clear()
        while len(self._ready) < self._ahead:
            tree = self._spare_name()
            self._orders += b"M" + os.fsencode(tree) + b"\0"
            self._ready.append(tree)
        self._send_orders()

    def _tidy_here(self) -> None:
        while self._discarded:
            remove_tree(self._discarded.pop())
        try:
            while len(self._ready) < self._ahead:
                tree = self._spare_name()
                make_tree(AttemptDirs.at(tree))
                self._ready.append(tree)
        except OSError as exc:  # a full disk, say: attempts make their own meanwhile
            log.warning("trees.failed: %s", exc)

    def _spare_name(self) -> Path:
        return self._spare / f"{self._prefix}{next(self._count)}"

    def _start_keeper(self) -> None:
        try:
            keeper = subprocess.Popen(  # its own session: a terminal's Ctrl-C is the daemon's
                [sys.executable, "-m", "mitosis_worker.treekeeper"],
                stdin=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            log.warning("trees.keeper_failed: %s; the worker makes its trees itself", exc)
            return
        self._pipe = keeper.stdin  # a pipe, given stdin=PIPE
        os.set_blocking(self._pipe.fileno(), False)
        self._keeper = keeper

    def _send_orders(self) -> None:
        try:
            while self._orders:
                del self._orders[: os.write(self._pipe.fileno(), self._orders)]
        except BlockingIOError:  # the keeper is behind: the rest goes with the next tidy
            pass
        except OSError as exc:  # gone: do its work here from now on
            self._lost_keeper(exc)

    def _lost_keeper(self, exc: OSError) -> None:
        """Take back what the keeper may not have done: trash of ours still there, and the
        spares it made (those it did not are forgotten)."""
        log.warning("trees.keeper_lost: %s; the worker makes its trees itself", exc)
        keeper, self._keeper = self._keeper, None
        with contextlib.suppress(OSError):
            self._pipe.close()
        keeper.poll()
        self._orders.clear()
        self._ready = collections.deque(tree for tree in self._ready if tree.exists())
        self._discarded = [
            Path(e.path) for e in os.scandir(self._trash) if e.name.startswith(self._prefix)
        ]
        self._tidy_here()


def _alive(name: str) -> bool:
    """Is the worker that named this entry (``pid-n``) still running?"""
    pid = name.partition("-")[0]
    if not pid.isdigit() or int(pid) == 0:
        return False
    try:
        os.kill(int(pid), 0)  # (not psutil: the keeper imports this module, and stays small)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
