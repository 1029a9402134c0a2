"""How a worker's state and heartbeat look, in the Workers table and in the details alike.

Meaning never rests on colour alone: every state has its symbol and word, and a late
heartbeat gets ``!`` (two missed beats at the default interval: half the coordinator's
heartbeat timeout) or ``!!`` (the timeout has passed: the coordinator is about to declare the
worker lost), so the table reads the same with ``NO_COLOR``.
"""

from __future__ import annotations

from datetime import datetime

from rich.text import Text

from mitosis_sdk.schemas import ShutdownMode, WorkerInfo, WorkerState
from mitosis_sdk.units import format_duration

DEFAULT_HEARTBEAT_TIMEOUT = 120.0

STATE_LOOK: dict[str, tuple[str, str]] = {
    WorkerState.ONLINE: ("● online", "green"),
    WorkerState.DRAINING: ("◐ draining", "yellow"),
    WorkerState.LOST: ("✖ lost", "bold red"),
    WorkerState.STOPPED: ("○ stopped", "dim"),
}
SHUTDOWN_LOOK: dict[str, tuple[str, str]] = {
    ShutdownMode.GRACEFUL: ("◌ stopping", "yellow"),
    ShutdownMode.FORCE: ("⊗ killing", "bold red"),
}
STATE_HELP = (
    "● online takes tasks · ◐ draining finishes its tasks, takes none · ◌ stopping / ⊗ killing:"
    " shutting down · ✖ lost: silent past the heartbeat timeout · ○ stopped"
)


def state_text(worker: WorkerInfo) -> Text:
    """``● online``; a worker ordered to shut down shows that instead of its state."""
    live = worker.state not in (WorkerState.STOPPED, WorkerState.LOST)
    if worker.shutdown is not None and live:
        word, style = SHUTDOWN_LOOK[worker.shutdown]
    else:
        word, style = STATE_LOOK.get(worker.state, (str(worker.state), ""))
    return Text(word, style=style)


def heartbeat_age(worker: WorkerInfo, now: datetime) -> float:
    return max(0.0, (now - worker.last_heartbeat).total_seconds())


def heartbeat_text(worker: WorkerInfo, now: datetime, timeout: float) -> Text:
    """``5s``, ``1m15s !`` (late) or ``3m !!`` (past the timeout); dim once it has ended."""
    age = heartbeat_age(worker, now)
    text = format_duration(age)
    if worker.state in (WorkerState.STOPPED, WorkerState.LOST):
        return Text(text, style="dim")
    if age >= timeout:
        return Text(f"{text} !!", style="bold red")
    if age >= timeout / 2:
        return Text(f"{text} !", style="yellow")
    return Text(text)


def grants_text(worker: WorkerInfo) -> str:
    return ",".join(f"{grant.group}:{grant.role}" for grant in worker.grants)


def short_id(value: object) -> str:
    """The first 8 characters of a UUID: enough to tell workers and tasks apart on screen."""
    return str(value)[:8]
