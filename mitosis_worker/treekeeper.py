"""The worker's tree keeper: makes spare attempt trees and removes used ones (see ``trees``).

It reads orders from its standard input, each a letter and a path ended by NUL: ``M`` make a
spare tree there, ``R`` remove the tree there. A spare is made under a temporary name and
renamed into place whole, so the daemon, which renames spares into attempts without asking,
never takes a tree half made. It runs in a session of its own, out of a terminal's Ctrl-C,
and ignores SIGINT and SIGTERM (a service manager stopping the worker signals every process
of its unit): it must outlive the daemon's graceful stop to carry out its last orders. It
ends when its input does -- the daemon closed the pipe, or died -- so it never outlives the
worker for longer than those orders take.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

from mitosis_worker.trees import AttemptDirs, make_tree, remove_tree

READ_SIZE = 1 << 16


def carry_out(order: bytes) -> None:
    kind, path = order[:1], Path(os.fsdecode(order[1:]))
    if kind == b"M":
        new = path.with_name(path.name + ".new")
        try:
            make_tree(AttemptDirs.at(new))
            os.rename(new, path)
        except OSError as exc:  # a full disk, say: the worker makes its own meanwhile
            shutil.rmtree(new, ignore_errors=True)
            print(f"treekeeper: cannot make {path}: {exc}", file=sys.stderr)
    elif kind == b"R":
        remove_tree(path)


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    pending = b""
    while chunk := os.read(sys.stdin.fileno(), READ_SIZE):
        *orders, pending = (pending + chunk).split(b"\0")
        for order in orders:
            carry_out(order)
    return 0


if __name__ == "__main__":
    sys.exit(main())
