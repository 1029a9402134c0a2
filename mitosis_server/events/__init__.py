"""The coordinator's event bus: in-process by default, Redis when configured.

Callers depend on :class:`EventBus` only; :func:`create_event_bus` picks the backend from
the one setting that differs between the embedded default and a multi-replica deployment.
"""

from __future__ import annotations

from mitosis_server.events.base import (
    EVENT_CAP,
    LOG_CAP,
    EventBus,
    EventBusUnavailable,
    Waiter,
)
from mitosis_server.events.cursors import InvalidCursor
from mitosis_server.events.fanout import EventFanout
from mitosis_server.events.memory import MemoryEventBus
from mitosis_server.events.redis import RedisEventBus

__all__ = [
    "EVENT_CAP",
    "LOG_CAP",
    "EventBus",
    "EventBusUnavailable",
    "EventFanout",
    "InvalidCursor",
    "MemoryEventBus",
    "RedisEventBus",
    "Waiter",
    "create_event_bus",
]


def create_event_bus(
    redis_url: str | None,
    prefix: str = "mitosis",
    *,
    event_cap: int = EVENT_CAP,
    log_cap: int = LOG_CAP,
) -> EventBus:
    """A Redis bus under ``prefix`` when ``redis_url`` is set, else the in-process one."""
    if redis_url is None:
        return MemoryEventBus(event_cap=event_cap, log_cap=log_cap)
    return RedisEventBus(redis_url, prefix, event_cap=event_cap, log_cap=log_cap)
