"""What one coordinator process holds for its lifetime, built in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from mitosis_server.config import CoordinatorSettings
from mitosis_server.services.auth import Authenticator
from mitosis_server.services.single_submit import RecentlyRunnable
from mitosis_server.services.wakeups import Wakeups


@dataclass
class Coordinator:
    settings: CoordinatorSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    authenticator: Authenticator
    default_admin_password: bool = False
    background: list = field(default_factory=list)
    # Wakes parked worker fetches (S4); in-process here, bus-backed across replicas.
    wakeups: Wakeups = field(default_factory=Wakeups)
    # (group, tags) some live worker could take lately: the submit warning's short memory.
    runnable: RecentlyRunnable = field(default_factory=RecentlyRunnable)
    # The liveness monitor (jobs/liveness.py), started in the app's lifespan.
    liveness: Any = None
    # The object store (storage/), opened in the app's lifespan.
    store: Any = None
    # The event bus (events/): in-process, or Redis when configured; started in the lifespan.
    events: Any = None
    # The one shared reader of the event stream feeding every open stream (events/fanout.py).
    fanout: Any = None
    # Re-checks every open stream's session and groups (services/stream_access.py).
    stream_access: Any = None
    # Redis credentials for workers to write live logs with (events/log_user.py), or None.
    log_shipping: Any = None
