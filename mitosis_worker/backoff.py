"""Exponential backoff with full jitter, for every retry against the coordinator."""

from __future__ import annotations

import random


class Backoff:
    """``delay()`` grows 2x per failure up to ``maximum``; ``reset()`` after a success.

    Full jitter (a random delay up to the bound) keeps a fleet of workers that lost the
    coordinator at the same moment from coming back at the same moment.
    """

    def __init__(self, initial: float = 0.5, maximum: float = 30.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self.failures = 0

    def delay(self) -> float:
        bound = min(self.maximum, self.initial * 2**self.failures)
        self.failures += 1
        return random.uniform(bound / 2, bound)  # noqa: S311 - jitter, not security

    def reset(self) -> None:
        self.failures = 0
