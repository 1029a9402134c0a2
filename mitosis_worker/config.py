"""The worker's settings: the ``[worker]`` section, ``MITO_*`` variables and flags."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec
import platformdirs

from mitosis_sdk.config import DURATION, Option
from mitosis_sdk.schemas import Role
from mitosis_sdk.schemas.workers import Grant


def default_work_dir() -> str:
    return str(Path(platformdirs.user_cache_dir("mitosis")) / "work")


class WorkerSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    coordinator: Annotated[str | None, Option("coordinator URL (default: the last one used)")] = (
        None
    )
    user: Annotated[str | None, Option("user the worker acts for (default: the last one)")] = None
    password: Annotated[str | None, Option("password, when no cached token works")] = None
    groups: Annotated[
        str | list[str], Option("group grants: g1,g2:write,g3:read,g4:admin (default role write)")
    ] = ""
    tags: Annotated[str | list[str], Option("capabilities; tasks need a subset (g: gpu,a100)")] = ""
    labels: Annotated[str | list[str], Option("free labels for searching")] = ""
    slots: Annotated[int, Option("tasks run at once")] = 1
    heartbeat_interval: Annotated[float, Option("time between heartbeats", DURATION)] = 30.0
    lifetime: Annotated[
        float | None, Option("stop gracefully after this long (default: never)", DURATION)
    ] = None
    poll_wait: Annotated[float, Option("how long one fetch parks (at most 30s)", DURATION)] = 30.0
    grace: Annotated[float, Option("SIGTERM to SIGKILL delay when a task is killed", DURATION)] = (
        10.0
    )
    shutdown_grace: Annotated[
        float, Option("on SIGTERM, how long running tasks may finish", DURATION)
    ] = 60.0
    connect_timeout: Annotated[
        float, Option("at start-up, how long to keep trying to reach the coordinator", DURATION)
    ] = 60.0
    work_dir: Annotated[str, Option("where attempt directories are made")] = msgspec.field(
        default_factory=default_work_dir
    )
    file_log: Annotated[bool, Option("also log to a rotating file")] = False
    log_path: Annotated[str | None, Option("the log file (default: WORK_DIR/worker.log)")] = None
    status_file: Annotated[str | None, Option("status file for `manager status`")] = None
    timeout: Annotated[float, Option("network timeout per request", DURATION)] = 30.0

    def grants(self) -> list[Grant]:
        """``g1,g2:write,g3:read`` as grants; ValueError naming the bad entry."""
        grants = []
        for item in split_list(self.groups):
            name, _, role = item.partition(":")
            try:
                grants.append(Grant(group=name, role=Role(role.lower() or "write")))
            except ValueError:
                raise ValueError(
                    f"option 'groups': {item!r} is not GROUP or GROUP:ROLE (read, write, admin)"
                ) from None
        return grants

    def validate(self) -> None:
        self.grants()
        if not 1 <= self.slots <= 1024:
            raise ValueError(f"option 'slots': expected 1 to 1024, got {self.slots}")
        if not 0 < self.poll_wait <= 30:
            raise ValueError("option 'poll_wait': expected more than 0s and at most 30s")
        if self.heartbeat_interval <= 0:
            raise ValueError("option 'heartbeat_interval' must be positive")


def split_list(value: str | list[str]) -> list[str]:
    items = value.split(",") if isinstance(value, str) else value
    return [item.strip() for item in items if item.strip()]
