"""Apply Alembic migrations to the coordinator's database, safely from several replicas."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mitosis_server.db.dialects import startup_lock

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(connection=None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


async def upgrade(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (a no-op when it is already there)."""
    async with engine.connect() as connection, startup_lock(connection):
        await connection.commit()
        await connection.run_sync(lambda sync: command.upgrade(alembic_config(sync), "head"))
        await connection.commit()


async def pending_revisions(connection: AsyncConnection) -> list[str]:
    """Revisions not yet applied; empty when the schema is current (used by `check`)."""

    def _pending(sync) -> list[str]:
        current = set(MigrationContext.configure(sync).get_current_heads())
        script = ScriptDirectory.from_config(alembic_config())
        return [
            rev.revision
            for rev in script.walk_revisions()
            if rev.revision not in current
            and not any(c in current for c in _descendants(script, rev.revision))
        ]

    return await connection.run_sync(_pending)


def _descendants(script: ScriptDirectory, revision: str) -> list[str]:
    return [
        r.revision for r in script.iterate_revisions("heads", revision) if r.revision != revision
    ]
