"""Waiting for an ``asyncio.Event`` up to a deadline, the one way every side of Mitosis does it.

``asyncio.timeout`` around the await, not ``asyncio.wait_for(event.wait(), ...)``: with
``wait_for`` the ``event.wait()`` coroutine exists before anything awaits it, and a task
cancelled before its first step leaves it never awaited (a RuntimeWarning, once a suite).
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["wait_event"]


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set, at most ``seconds`` (none when 0 or less); whether it
    is set."""
    if event.is_set():  # no deadline to arm: the hot path of a wake-up already in
        return True
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, seconds)):
            await event.wait()
    return event.is_set()
