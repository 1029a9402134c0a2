"""The worker's slots, and the tasks it holds ahead of them (FEATURES S4, W1 ``--slots``).

At most ``--slots`` attempts run at once. While its tasks are short, a worker also asks for
tasks *ahead* of its free slots: they wait here, first in first out, and start the moment a
slot frees. Without them every fetch took turns with the runs -- the coordinator answered,
the worker ran what it got, then asked again while its slots stood empty; with them the
next fetch is out while the tasks in hand run, and each fetch reports and claims several.

A task held ahead has been claimed (it is ``running`` on the coordinator, phase unset) but
never started, so it can go back at no cost: when no slot has freed for ``HOLD`` seconds
while tasks wait -- the running ones turned out long -- the waiting ones are handed back,
and so is every one on drain or stop. (A queue that moves, however slowly, keeps its
tasks: only a stalled one gives them up.)
The coordinator requeues a handed-back attempt without counting it against the task's
attempts. The daemon asks for ``AHEAD`` tasks per slot only while its latest tasks took less
than ``SHORT_RUN``; for longer tasks holding some ahead saves nothing worth a task waiting.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Generic, TypeVar

from mitosis_sdk.schemas import MAX_SLOTS

AHEAD = 3  # tasks held ahead per slot, while tasks are short
SHORT_RUN = 0.020  # seconds: tasks shorter than this are worth holding ahead
# Seconds without a freed slot before the tasks held ahead are handed back. Longer than
# SHORT_RUN: by then the tasks running count as long, and the worker asks for none ahead.
HOLD = 0.25

Item = TypeVar("Item")


def ahead_for(slots: int) -> int:
    """How many tasks a worker with ``slots`` holds ahead at most (all it holds fits in a
    heartbeat: ``MAX_SLOTS``)."""
    return max(0, min(AHEAD * slots, MAX_SLOTS - slots))


class Slots(Generic[Item]):
    """``size`` slots; ``start`` is called for each item given a slot, ``hand_back`` for
    each queued item that leaves without one (with why)."""

    def __init__(
        self,
        size: int,
        start: Callable[[Item], None],
        hand_back: Callable[[Item, str], None],
        hold: float | None = None,
    ) -> None:
        self.size = size
        self.busy = 0  # items started and not yet released
        self._start = start
        self._hand_back = hand_back
        self._hold = HOLD if hold is None else hold
        self._queued: collections.deque[tuple[Item, float]] = collections.deque()
        self._released = float("-inf")  # loop time a slot last freed
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        """How many wait for a slot."""
        return len(self._queued)

    def admit(self, item: Item) -> None:
        """Start ``item`` in a free slot, or queue it until one frees."""
        if self.busy < self.size:
            self.busy += 1
            self._start(item)
            return
        loop = asyncio.get_running_loop()
        self._queued.append((item, loop.time()))
        if self._timer is None:
            self._timer = loop.call_later(self._hold, self._hand_back_if_stalled)

    def release(self) -> None:
        """A started item ended: its slot goes to the longest queued."""
        self.busy -= 1
        if self._queued:
            self._released = asyncio.get_running_loop().time()
        while self._queued and self.busy < self.size:
            item, _ = self._queued.popleft()
            self.busy += 1
            self._start(item)

    def withdraw(self, item: Item) -> bool:
        """Take a queued ``item`` out (it will not start); False if it is not queued."""
        for index, (queued, _) in enumerate(self._queued):
            if queued is item:
                del self._queued[index]
                return True
        return False

    def hand_back_all(self, why: str) -> None:
        """Every queued item leaves unstarted (drain, stop)."""
        while self._queued:
            item, _ = self._queued.popleft()
            self._hand_back(item, why)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _hand_back_if_stalled(self) -> None:
        """No slot freed for ``hold`` seconds while items waited: they all go back. Else
        look again when that would be so."""
        self._timer = None
        if not self._queued:
            return
        loop = asyncio.get_running_loop()
        stalled_since = max(self._released, self._queued[0][1])
        wait = stalled_since + self._hold - loop.time()
        if wait > 0:
            self._timer = loop.call_later(wait, self._hand_back_if_stalled)
            return
        self.hand_back_all(f"no slot freed within {self._hold:g}s")
