"""Workers on the wire (FEATURES W1-W4, S4, T4, T8): registration, the worker's own calls
(heartbeat, fetch, reports, unregister) and the management calls of users.

The worker daemon learns what to do from ``WorkerCommands``, which every heartbeat and fetch
reply carries: which attempts to kill, whether to drain, whether to shut down.

A fetch is also how a worker reports: ``FetchRequest`` carries the results and phases that
piled up since the last one, so a busy worker spends one round trip per task (report the
last, take the next) instead of three. Each report gets its own ``ReportOutcome`` in the
reply; a report from a superseded attempt is refused there (``conflict``) without failing
the others. A result sent again after its reply was lost is answered like the first time.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from mitosis_sdk.errors import ErrorBody
from mitosis_sdk.schemas.common import Name, Role, Struct
from mitosis_sdk.schemas.events import RedisShipping
from mitosis_sdk.schemas.limits import TagList, check_unique
from mitosis_sdk.schemas.tasks import (
    Resource,
    TaskPhase,
    TaskReason,
    TaskState,
)
from mitosis_sdk.units import parse_duration

MAX_SLOTS = 1024
MAX_FETCH_WAIT = 30.0
MAX_GRANTS = 256


class WorkerState(enum.StrEnum):
    """``online`` takes tasks, ``draining`` finishes its tasks but takes no new ones, ``lost``
    stopped heartbeating (it comes back online when it heartbeats again), ``stopped`` has
    unregistered."""

    ONLINE = "online"
    DRAINING = "draining"
    LOST = "lost"
    STOPPED = "stopped"


class ShutdownMode(enum.StrEnum):
    """``graceful``: drain, then exit; ``force``: kill running tasks (they are requeued)."""

    GRACEFUL = "graceful"
    FORCE = "force"


class Grant(Struct):
    """A group's grant on a worker: read (see it), write (run its tasks), admin (manage it)."""

    group: Name
    role: Role = Role.WRITE


class HostFacts(Struct):
    hostname: Annotated[str, msgspec.Meta(max_length=255)] | None = None
    cores: Annotated[int, msgspec.Meta(ge=0)] | None = None
    memory: Annotated[int, msgspec.Meta(ge=0)] | None = None
    os: Annotated[str, msgspec.Meta(max_length=255)] | None = None
    arch: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    gpus: Annotated[int, msgspec.Meta(ge=0)] | None = None


def _unique_groups(grants: list[Grant]) -> None:
    check_unique([g.group for g in grants], "grants")


class WorkerRegister(Struct):
    """A new worker; the caller needs ``write`` in every granted group (admins any). The
    caller's personal group always gets ``admin``."""

    tags: TagList = []
    labels: TagList = []
    grants: Annotated[list[Grant], msgspec.Meta(max_length=MAX_GRANTS)] = []
    slots: Annotated[int, msgspec.Meta(ge=1, le=MAX_SLOTS)] = 1
    facts: HostFacts = msgspec.field(default_factory=HostFacts)
    version: Annotated[str, msgspec.Meta(max_length=64)] = ""

    def __post_init__(self) -> None:
        check_unique(self.tags, "tags")
        check_unique(self.labels, "labels")
        _unique_groups(self.grants)


class WorkerInfo(Struct):
    """A worker. ``running`` lists every task it holds: those in its slots and, while its
    tasks are short, a few it holds ahead of them, queued until a slot frees."""

    uuid: uuid.UUID
    creator: str
    state: WorkerState
    tags: list[str]
    labels: list[str]
    grants: list[Grant]
    slots: int
    running: list[uuid.UUID]
    last_heartbeat: datetime
    created_at: datetime
    version: str
    facts: HostFacts
    shutdown: ShutdownMode | None = None

    @property
    def slots_in_use(self) -> int:
        return min(len(self.running), self.slots)

    @property
    def held_ahead(self) -> int:
        """Tasks it holds beyond its slots, waiting for one."""
        return max(0, len(self.running) - self.slots)


class WorkerRegistered(Struct):
    """The new worker and its own token (bound to it; renewed by heartbeats), and, when the
    coordinator uses Redis, where to write live logs directly (None: through it)."""

    worker: WorkerInfo
    token: str
    token_expires_at: datetime
    log_redis: RedisShipping | None = None


class AttemptRef(Struct):
    task: uuid.UUID
    attempt: Annotated[int, msgspec.Meta(ge=1)]


class Heartbeat(Struct):
    """What the worker is running, so the coordinator can say which attempts to kill."""

    running: Annotated[list[AttemptRef], msgspec.Meta(max_length=MAX_SLOTS)] = []


class WorkerCommands(Struct):
    """Orders for the worker: kill ``cancel`` attempts now; ``drain`` means take no new
    tasks; ``shutdown`` means exit (``force``: kill first). ``token`` is a renewed token."""

    state: WorkerState
    cancel: list[AttemptRef] = []
    drain: bool = False
    shutdown: ShutdownMode | None = None
    token: str | None = None
    token_expires_at: datetime | None = None


class Assignment(Struct):
    """A claimed task: everything the worker needs to run this attempt."""

    task: uuid.UUID
    attempt: int
    group: str
    seq: int
    creator: str
    command: list[str]
    env: dict[str, str]
    timeout: float
    terminal_output: bool
    resources: list[Resource] = []
    array_index: int | None = None
    upstream: uuid.UUID | None = None


class PhaseReport(Struct):
    attempt: Annotated[int, msgspec.Meta(ge=1)]
    phase: TaskPhase
    message: Annotated[str, msgspec.Meta(max_length=4096)] | None = None


class ResultReport(Struct):
    """How an attempt ended. Exit code 0 with no reason is success; anything else fails the
    task (reason defaults to ``nonzero_exit`` or ``signal``)."""

    attempt: Annotated[int, msgspec.Meta(ge=1)]
    exit_code: Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)] | None = None
    signal: Annotated[int, msgspec.Meta(ge=1, le=255)] | None = None
    reason: TaskReason | None = None
    message: Annotated[str, msgspec.Meta(max_length=4096)] | None = None
    # The last phase the attempt reached (T4): a task that ends within the worker's
    # coalescing window sends no phase report of its own, so its result says how far it got.
    phase: TaskPhase | None = None

    def __post_init__(self) -> None:
        if self.exit_code is None and self.signal is None and self.reason is None:
            raise ValueError("give an exit_code, a signal or a reason")


class ReportAck(Struct):
    """The task's state after a report; ``cancel`` asks the worker to kill the attempt."""

    state: TaskState
    cancel: bool = False


class ResultEntry(Struct):
    """A result, in a fetch, for one task."""

    task: uuid.UUID
    report: ResultReport


class PhaseEntry(Struct):
    """A phase, in a fetch, for one task."""

    task: uuid.UUID
    report: PhaseReport


MAX_REPORTS = 4 * MAX_SLOTS


class FetchRequest(Struct, omit_defaults=True):
    """Claim up to ``max_tasks`` tasks; with ``wait``, park until one arrives (≤ 30 s).

    ``results`` and ``phases`` are recorded first, in one transaction with the claim (their
    slots count as free for it). A fetch that carries reports answers at once instead of
    parking, with an outcome per report. ``known``, when given, lists every attempt the
    worker holds as far as it knows (running, or with a result not yet acknowledged):
    attempts held for it that it does not list -- claimed by a fetch whose reply was lost --
    are delivered again. ``max_tasks`` 0 only reports. ``ahead``: how many tasks the worker
    may hold beyond its slots, queued until a slot frees (it asks while its tasks are short,
    so its next tasks are at hand when the last ones end; the coordinator holds it to
    ``MAX_SLOTS`` in all). (Empty fields are left out on the wire, so a worker with nothing
    to report can still talk to an older coordinator.)
    """

    wait: Annotated[str | float, msgspec.Meta(description="seconds or 5s; at most 30s")] = 0.0
    max_tasks: Annotated[int, msgspec.Meta(ge=0, le=MAX_SLOTS)] = 1
    ahead: Annotated[int, msgspec.Meta(ge=0, le=MAX_SLOTS)] = 0
    results: Annotated[list[ResultEntry], msgspec.Meta(max_length=MAX_REPORTS)] = []
    phases: Annotated[list[PhaseEntry], msgspec.Meta(max_length=MAX_REPORTS)] = []
    known: Annotated[list[AttemptRef], msgspec.Meta(max_length=MAX_REPORTS)] | None = None

    def __post_init__(self) -> None:
        try:
            seconds = parse_duration(self.wait)
        except ValueError as exc:
            raise ValueError(f"wait: {exc}") from None
        if seconds > MAX_FETCH_WAIT:
            raise ValueError(f"wait: at most 30s, got {self.wait!r}")

    @property
    def wait_seconds(self) -> float:
        return parse_duration(self.wait)

    @property
    def reports(self) -> bool:
        return bool(self.results or self.phases)


class ReportOutcome(Struct, omit_defaults=True):
    """What became of one report of a fetch: ``ack`` when it was recorded (or had been, for
    a result sent again), else ``refused`` with the error a single report would have got
    (``conflict`` for a superseded or ended attempt, ``not_found``, ``forbidden``)."""

    task: uuid.UUID
    attempt: int
    ack: ReportAck | None = None
    refused: ErrorBody | None = None


class FetchReply(Struct):
    """Claimed (or re-delivered) tasks, orders, and the outcome of each report sent:
    ``phases`` then ``results``, in the order of the request."""

    tasks: list[Assignment]
    commands: WorkerCommands
    reports: list[ReportOutcome] = []


class WorkerFilter(Struct):
    """Which workers (FEATURES W3): tags and labels ⊇, any of the states and creators."""

    group: Name | None = None
    tags: TagList = []
    labels: TagList = []
    states: list[WorkerState] = []
    creators: Annotated[list[Name], msgspec.Meta(max_length=1000)] = []
    uuids: Annotated[list[uuid.UUID], msgspec.Meta(max_length=10_000)] = []

    @property
    def empty(self) -> bool:
        return self == WorkerFilter()


class WorkerQuery(WorkerFilter):
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    offset: Annotated[int, msgspec.Meta(ge=0)] = 0


class WorkerPage(Struct):
    """A page of workers. ``heartbeat_timeout`` is the coordinator's: a worker silent that
    long is marked lost, so clients can warn about late heartbeats before it happens."""

    workers: list[WorkerInfo]
    total: int
    heartbeat_timeout: float


class GrantsUpdate(Struct):
    """Add grants or change their roles (granting needs ``write`` in the group)."""

    grants: Annotated[list[Grant], msgspec.Meta(min_length=1, max_length=MAX_GRANTS)]

    def __post_init__(self) -> None:
        _unique_groups(self.grants)


class GrantsRemove(Struct):
    groups: Annotated[list[Name], msgspec.Meta(min_length=1, max_length=MAX_GRANTS)]


class WorkerShutdown(Struct):
    force: bool = False


class WorkersShutdown(Struct):
    """Shut down workers by UUID list or by filter (exactly one)."""

    uuids: Annotated[list[uuid.UUID], msgspec.Meta(max_length=10_000)] = []
    filter: WorkerFilter | None = None
    force: bool = False

    def __post_init__(self) -> None:
        if bool(self.uuids) == (self.filter is not None):
            raise ValueError("give either 'uuids' or 'filter'")
        if self.filter is not None and self.filter.empty:
            raise ValueError("filter: name at least one condition (a group, tags, states ...)")


class WorkersShutdownReply(Struct):
    workers: list[uuid.UUID]
