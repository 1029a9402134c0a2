"""Artifact retention (F5): group admins choose N days; the sweeper deletes older artifacts
and gives their size back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from mitosis_sdk import errors
from mitosis_sdk.schemas import ArtifactType
from mitosis_server.db.models import Artifact, utcnow
from mitosis_server.jobs.files import FileSweeper
from mitosis_server.services.uploads import Objects
from tests.integration.server.fleet import spec


async def test_artifacts_past_retention_are_deleted_and_freed(app, lab, make_file):
    """Only group admins set it; members read it; an 8-day-old artifact goes at 7 days."""
    writer = lab["write"]
    with pytest.raises(errors.Forbidden):
        await writer.set_retention("lab", 7)
    assert (await lab["group-admin"].set_retention("lab", 7)).artifact_days == 7
    assert (await lab["read"].get_retention("lab")).artifact_days == 7
    old, new = [(await writer.submit_task(spec(group="lab"))).uuid for _ in range(2)]
    await writer.upload_artifact(old, ArtifactType.RESULT, make_file("a", 100))
    await writer.upload_artifact(new, ArtifactType.RESULT, make_file("b", 10))
    coordinator = app.state.coordinator
    async with coordinator.sessions.begin() as db:
        await db.execute(
            update(Artifact)
            .where(Artifact.size == 100)
            .values(created_at=utcnow() - timedelta(days=8))
        )
    sweeper = FileSweeper(
        coordinator.sessions, Objects(coordinator.store, coordinator.settings.url_lifetime)
    )
    await sweeper.sweep()
    assert await writer.list_artifacts(old) == []
    assert [a.size for a in await writer.list_artifacts(new)] == [10]
    assert (await writer.get_group("lab")).storage_used == 10
    assert (await lab["admin"].set_retention("lab", None)).artifact_days is None
