"""Before and after the process: resources in, artifacts out (FEATURES X3, X4).

Resources are downloaded into ``MITO_RESOURCE_DIR`` before the process starts; one that is
missing or that the task's creator may not read fails the attempt with ``resource_error``
instead of hanging. Afterwards each non-empty output folder becomes a tar.gz artifact
(``result``, ``exec-log``, and ``std-log`` with ``--terminal``) uploaded through presigned
URLs, retried with backoff. An upload that still fails is reported on the task; it never
hides the exit status.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path

from mitosis_sdk import errors
from mitosis_sdk.archives import pack_directory
from mitosis_sdk.client import AsyncClient
from mitosis_sdk.schemas.tasks import ArtifactType
from mitosis_worker.backoff import Backoff
from mitosis_worker.trees import AttemptDirs

log = logging.getLogger(__name__)

UPLOAD_TRIES = 4


@dataclass(frozen=True)
class AttemptLink:
    """The coordinator calls of one attempt this worker holds."""

    client: AsyncClient
    worker: uuid.UUID
    task: uuid.UUID
    attempt: int

    async def fetch_resources(self, directory: Path) -> str | None:
        """Download every resource; the reason it failed, or None."""
        try:
            await self.client.download_resources(self.worker, self.task, self.attempt, directory)
        except (errors.NotFound, errors.Forbidden, errors.BadRequest) as exc:
            return exc.message
        except errors.MitosisError as exc:
            return f"resources could not be downloaded: {exc.message}"
        return None

    async def upload_outputs(self, dirs: AttemptDirs, terminal_output: bool) -> list[str]:
        """Pack and upload the non-empty output folders; the problems, if any."""
        outputs = [(ArtifactType.RESULT, dirs.result), (ArtifactType.EXEC_LOG, dirs.exec)]
        if terminal_output:
            outputs.append((ArtifactType.STD_LOG, dirs.std_log))
        problems = []
        for kind, folder in outputs:
            if not folder.is_dir() or not any(folder.iterdir()):
                continue
            archive = dirs.root / f"{kind}.tar.gz"
            try:
                packed = await asyncio.to_thread(pack_directory, folder, archive, str(kind))
            except (OSError, ValueError) as exc:
                problems.append(f"{kind} could not be packed: {exc}")
                continue
            if packed.skipped:
                log.warning(
                    "artifact.skipped task=%s kind=%s files=%s", self.task, kind, packed.skipped
                )
            problem = await self._upload(kind, archive)
            if problem:
                problems.append(problem)
        return problems

    async def submit_downstream(self, new_task: Path) -> None:
        """Hand what the task wrote to ``MITO_NEW_TASK`` to the coordinator (FEATURES T7).

        The file goes verbatim: the coordinator parses it and records a malformed one on the
        task (``downstream_submit_failed``), so a bad file never crashes the worker.
        """
        try:
            content = _read_if_present(new_task)  # a small local file: no thread hop
        except OSError as exc:
            log.warning("downstream.unreadable task=%s: %s", self.task, exc)
            return
        if not content.strip():
            return
        backoff = Backoff(initial=0.5, maximum=10.0)
        for attempt in range(1, UPLOAD_TRIES + 1):
            try:
                reply = await self.client.submit_downstream(
                    self.worker, self.task, self.attempt, content
                )
            except (errors.Conflict, errors.NotFound, errors.Forbidden, errors.BadRequest) as exc:
                log.warning("downstream.refused task=%s: %s", self.task, exc.message)
                return
            except errors.MitosisError as exc:
                if attempt == UPLOAD_TRIES:
                    log.warning("downstream.failed task=%s: %s", self.task, exc.message)
                    return
                await asyncio.sleep(backoff.delay())
                continue
            if reply.error:
                log.warning("downstream.rejected task=%s: %s", self.task, reply.error)
            return

    async def _upload(self, kind: ArtifactType, archive: Path) -> str | None:
        backoff = Backoff(initial=0.5, maximum=10.0)
        for attempt in range(1, UPLOAD_TRIES + 1):
            try:
                await self.client.upload_attempt_artifact(
                    self.worker, self.task, self.attempt, kind, archive
                )
                return None
            except (errors.Conflict, errors.QuotaExceeded, errors.Forbidden) as exc:
                return f"upload of {kind} refused: {exc.message}"
            except errors.MitosisError as exc:
                if attempt == UPLOAD_TRIES:
                    return f"upload of {kind} failed after {UPLOAD_TRIES} tries: {exc.message}"
                await asyncio.sleep(backoff.delay())
        return None


def _read_if_present(path: Path) -> bytes:
    return path.read_bytes() if path.is_file() else b""
