"""What one coordinator process holds for its lifetime, built in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from mitosis_server.config import CoordinatorSettings
from mitosis_server.services.auth import Authenticator


@dataclass
class Coordinator:
    settings: CoordinatorSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    authenticator: Authenticator
    default_admin_password: bool = False
    background: list = field(default_factory=list)
