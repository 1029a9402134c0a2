"""The worker's slots and the tasks it holds ahead of them (``mitosis_worker.slots``)."""

from __future__ import annotations

import asyncio

from mitosis_sdk.schemas import MAX_SLOTS
from mitosis_worker.slots import AHEAD, Slots, ahead_for


class Item:
    """A held attempt as the slots see it: something to start, compared by identity."""

    def __init__(self, name: str) -> None:
        self.name = name


class Recorder:
    def __init__(self, size: int, hold: float = 10.0) -> None:
        self.started: list[str] = []
        self.handed_back: list[tuple[str, str]] = []
        self.items: dict[str, Item] = {}
        self.slots: Slots[Item] = Slots(
            size,
            lambda item: self.started.append(item.name),
            lambda item, why: self.handed_back.append((item.name, why)),
            hold,
        )

    def admit(self, names: str) -> None:
        for name in names:
            self.items[name] = Item(name)
            self.slots.admit(self.items[name])


async def test_items_start_while_slots_are_free_then_queue_first_in_first_out():
    slots = Recorder(2)
    slots.admit("abcde")
    assert (slots.started, len(slots.slots), slots.slots.busy) == (["a", "b"], 3, 2)
    slots.slots.release()
    assert slots.started == ["a", "b", "c"]
    slots.slots.release()
    slots.slots.release()
    assert (slots.started, len(slots.slots), slots.slots.busy) == (list("abcde"), 0, 2)
    slots.slots.close()


async def test_a_queued_item_can_be_withdrawn_and_never_starts():
    slots = Recorder(1)
    slots.admit("abc")
    assert slots.slots.withdraw(slots.items["b"])
    assert not slots.slots.withdraw(slots.items["b"])
    assert not slots.slots.withdraw(slots.items["a"])  # started: not queued
    slots.slots.release()
    assert slots.started == ["a", "c"]
    slots.slots.close()


async def test_a_stalled_queue_hands_back_everything_waiting():
    """No slot freed for ``hold`` seconds: every queued item goes back, none starts."""
    slots = Recorder(1, hold=0.05)
    slots.admit("abc")
    await asyncio.sleep(0.2)
    assert slots.handed_back == [
        ("b", "no slot freed within 0.05s"),
        ("c", "no slot freed within 0.05s"),
    ]
    slots.slots.release()
    assert (slots.started, slots.slots.busy) == (["a"], 0)
    slots.slots.close()


async def test_a_queue_that_moves_keeps_its_items_however_long_they_wait():
    """Slots freeing every so often (each sooner than ``hold``) hand nothing back, even to an
    item that waits longer than ``hold`` in all."""
    slots = Recorder(1, hold=0.1)
    slots.admit("abcd")
    for _ in range(3):
        await asyncio.sleep(0.06)
        slots.slots.release()
    assert (slots.started, slots.handed_back) == (list("abcd"), [])
    slots.slots.close()


async def test_drain_hands_back_what_waits_and_leaves_what_runs():
    slots = Recorder(1)
    slots.admit("abc")
    slots.slots.hand_back_all("the worker is draining")
    assert slots.handed_back == [("b", "the worker is draining"), ("c", "the worker is draining")]
    assert (slots.started, slots.slots.busy, len(slots.slots)) == (["a"], 1, 0)
    slots.slots.close()


def test_what_a_worker_holds_ahead_fits_in_a_heartbeat():
    assert ahead_for(2) == AHEAD * 2
    assert ahead_for(MAX_SLOTS // 2) == MAX_SLOTS - MAX_SLOTS // 2
    assert ahead_for(MAX_SLOTS) == 0
