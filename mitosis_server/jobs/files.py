"""The file sweeper: reservations of abandoned uploads come back, expired artifacts go.

* An upload neither completed nor aborted by its ``complete_by`` (twice the URL lifetime after
  it began) is aborted: its reservation returns to the group, whatever was sent is dropped.
* Artifacts older than their group's retention (FEATURES F5) are deleted, their size given
  back.

Every replica may sweep; each upload and artifact is handled once (see
:func:`mitosis_server.services.uploads.sweep_expired` and
:func:`mitosis_server.services.retention.expire_artifacts`).
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mitosis_sdk.waiting import wait_event
from mitosis_server.services.retention import expire_artifacts
from mitosis_server.services.uploads import Objects, sweep_expired

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 60.0


class FileSweeper:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        objects: Objects,
        interval: float = SWEEP_INTERVAL,
    ) -> None:
        self.sessions = sessions
        self.objects = objects
        self.interval = interval

    async def sweep(self) -> None:
        await sweep_expired(self.sessions, self.objects)
        expired = await expire_artifacts(self.sessions, self.objects)
        if expired:
            log.info("retention.expired artifacts=%d", expired)

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep every ``interval`` until ``stop`` is set."""
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception:  # a database or store hiccup must not end the sweeper
                log.exception("files.sweep_failed")
            await wait_event(stop, self.interval)
