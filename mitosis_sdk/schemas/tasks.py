"""Tasks on the wire (FEATURES T1-T10): the spec users submit, queries, changes, replies.

Limits (FEATURES V, in :mod:`mitosis_sdk.schemas.limits`) are checked on construction, so
the client fails before sending and the coordinator refuses the same input with a 400 naming
the field. Durations travel as text (``"10m"``) or seconds.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from mitosis_sdk.errors import ErrorBody
from mitosis_sdk.schemas.common import Name, Struct
from mitosis_sdk.schemas.limits import (
    DEFAULT_TIMEOUT,
    MAX_BATCH,
    MAX_DEPENDENCIES,
    MAX_PAGE,
    MAX_RESOURCES,
    Command,
    Comparison,
    Duration,
    Priority,
    TagList,
    check_command,
    check_env,
    check_unique,
    relative_path,
    timeout_seconds,
)


class TaskState(enum.StrEnum):
    """``pending`` waits on dependencies, ``ready`` is queued; the last three are terminal."""

    PENDING = "pending"
    READY = "ready"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED})
QUEUED_STATES = frozenset({TaskState.PENDING, TaskState.READY})


class TaskPhase(enum.StrEnum):
    """Where a running attempt is, as its worker reports it (FEATURES T4); only moves forward."""

    FETCHING = "fetching"
    WAITING = "waiting"
    SPAWNED = "spawned"
    EXITED = "exited"
    UPLOADING = "uploading"
    COMMITTED = "committed"

    @property
    def rank(self) -> int:
        return list(TaskPhase).index(self)


class TaskReason(enum.StrEnum):
    """Why a task ended the way it did (or why an attempt ended)."""

    NONZERO_EXIT = "nonzero_exit"
    SIGNAL = "signal"
    TIMEOUT = "timeout"
    RESOURCE_ERROR = "resource_error"
    EXEC_ERROR = "exec_error"
    UPLOAD_FAILED = "upload_failed"
    WORKER_LOST = "worker_lost"
    WORKER_STOPPED = "worker_stopped"
    REPORT_OVERDUE = "report_overdue"
    CANCELLED = "cancelled"
    DEPENDENCY_NEVER_SATISFIED = "dependency_never_satisfied"
    DOWNSTREAM_SUBMIT_FAILED = "downstream_submit_failed"


class ArtifactType(enum.StrEnum):
    RESULT = "result"
    EXEC_LOG = "exec-log"
    STD_LOG = "std-log"


class DependencyCondition(enum.StrEnum):
    """Slurm-style conditions (FEATURES T6)."""

    AFTER = "after"
    AFTEROK = "afterok"
    AFTERNOTOK = "afternotok"
    AFTERANY = "afterany"


class Resource(Struct):
    """A file downloaded before start into ``MITO_RESOURCE_DIR/path``: a group attachment
    (``attachment`` key) or another task's artifact (``artifact`` UUID and ``type``)."""

    path: str
    attachment: str | None = None
    artifact: uuid.UUID | None = None
    type: ArtifactType | None = None

    def __post_init__(self) -> None:
        relative_path(self.path, "resources.path")
        if (self.attachment is None) == (self.artifact is None):
            raise ValueError("resources: give exactly one of 'attachment' or 'artifact'")
        if self.artifact is not None and self.type is None:
            raise ValueError("resources: an artifact needs its 'type' (result, exec-log, std-log)")
        if self.attachment is not None:
            if self.type is not None:
                raise ValueError("resources: 'type' belongs to artifacts only")
            relative_path(self.attachment, "resources.attachment")


class Dependency(Struct):
    """A link between two tasks under a condition: in ``depends_on``, ``task`` is the one
    waited for; in ``dependents``, the one waiting."""

    task: uuid.UUID
    condition: DependencyCondition = DependencyCondition.AFTEROK


class TaskSpec(Struct):
    """What to run, where and how (FEATURES T1); every field but ``command`` is optional."""

    command: Command
    group: Name | None = None
    tags: TagList = []
    labels: TagList = []
    env: dict[str, str] = {}
    timeout: Duration | None = None
    priority: Priority = 0
    terminal_output: bool = False
    resources: Annotated[list[Resource], msgspec.Meta(max_length=MAX_RESOURCES)] = []
    depends_on: Annotated[list[Dependency], msgspec.Meta(max_length=MAX_DEPENDENCIES)] = []
    retries: Annotated[int, msgspec.Meta(ge=0, le=100)] = 0
    # First retry's delay; each further retry doubles it (T8). None: retry at once.
    retry_delay: Duration | None = None

    def __post_init__(self) -> None:
        check_command(self.command)
        if self.retry_delay is not None:
            timeout_seconds(self.retry_delay, "retry_delay")
        if len({d.task for d in self.depends_on}) != len(self.depends_on):
            raise ValueError("depends_on: each task may be named once")
        check_env(self.env)
        check_unique(self.tags, "tags")
        check_unique(self.labels, "labels")
        if self.timeout is not None:
            timeout_seconds(self.timeout)
        check_unique([r.path for r in self.resources], "resources.path")

    @property
    def timeout_seconds(self) -> float:
        return DEFAULT_TIMEOUT if self.timeout is None else timeout_seconds(self.timeout)


MAX_ARRAY = 10_000


def parse_array(text: str) -> tuple[list[int], int | None]:
    """``0-99``, ``0-99:2``, ``1,5,7`` or a mix, optionally ``%N``: (indexes, throttle).

    Raises ValueError with a message a user can act on (T2)."""
    body, _, throttle_text = text.strip().partition("%")
    throttle = None
    if throttle_text:
        if not throttle_text.isdigit() or int(throttle_text) < 1:
            raise ValueError(f"array: throttle %{throttle_text} must be a whole number >= 1")
        throttle = int(throttle_text)
    indexes: list[int] = []
    for part in body.split(","):
        part = part.strip()
        span, _, step_text = part.partition(":")
        first, dash, last = span.partition("-")
        try:
            start = int(first)
            stop = int(last) if dash else start
            step = int(step_text) if step_text else 1
        except ValueError:
            raise ValueError(f"array: {part!r} is not N, N-M or N-M:STEP") from None
        if start < 0 or step < 1:
            raise ValueError(f"array: {part!r}: indexes are >= 0 and the step >= 1")
        if stop < start:
            raise ValueError(f"array: {part!r}: the range ends before it starts")
        if (stop - start) // step + 1 + len(indexes) > MAX_ARRAY:
            raise ValueError(f"array: at most {MAX_ARRAY} tasks per array")
        indexes.extend(range(start, stop + 1, step))
    if len(set(indexes)) != len(indexes):
        raise ValueError("array: an index appears twice")
    return indexes, throttle


class ArraySubmit(Struct):
    """One spec run once per index (T2): ``array`` is ``0-99``, ``0-99:2``, ``1,5,7``,
    optionally ``%N`` (at most N of them running at once)."""

    spec: TaskSpec
    array: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]

    def __post_init__(self) -> None:
        parse_array(self.array)


class ArraySubmitted(Struct):
    array_id: uuid.UUID
    group: str
    count: int
    throttle: int | None
    tasks: list[uuid.UUID]
    # Set when no live worker could ever take the array's tasks (T12): they share one spec,
    # so its first task speaks for all. See ``tasks explain``.
    warning: str | None = None


class TaskRerun(Struct):
    """Submit a copy of a task's spec (T11); set fields replace the original's."""

    change: TaskChange | None = None
    labels: TagList | None = None
    group: Name | None = None


class DownstreamSubmit(Struct):
    """What a task wrote to ``MITO_NEW_TASK`` (T7), sent verbatim by its worker for the
    attempt it holds: one JSON spec or a JSON list of specs. The coordinator parses it, so a
    malformed file is recorded on the writing task (``downstream_submit_failed``)."""

    attempt: Annotated[int, msgspec.Meta(ge=1)]
    content: Annotated[str, msgspec.Meta(max_length=16 * 1024 * 1024)]


class DownstreamReply(Struct, omit_defaults=True):
    """The tasks submitted (dependents of the writer), or the error recorded on the writer."""

    tasks: list[TaskSubmitted] = []
    error: str | None = None


class Explanation(Struct):
    """One worker's verdict on a queued task (T12): ``blocked_by`` is empty when it could
    take the task now."""

    worker: uuid.UUID
    state: str
    blocked_by: list[str]
    detail: str


class TaskExplain(Struct):
    task: uuid.UUID
    state: TaskState
    summary: str
    workers: list[Explanation]


class TaskBatch(Struct):
    """Many specs in one request; each is answered. ``all_or_nothing``: one error, none kept."""

    tasks: Annotated[list[TaskSpec], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]
    all_or_nothing: bool = False


class TaskSubmitted(Struct):
    uuid: uuid.UUID
    group: str
    seq: int
    state: TaskState
    # Set when no live worker could ever take the task (T12): see ``tasks explain``.
    warning: str | None = None


class BatchItem(Struct, omit_defaults=True):
    """One spec's answer: the new task, or why it was refused."""

    task: TaskSubmitted | None = None
    error: ErrorBody | None = None


class BatchReply(Struct):
    submitted: int
    failed: int
    results: list[BatchItem]


class AttemptInfo(Struct):
    attempt: int
    worker: uuid.UUID | None
    state: str
    started_at: datetime
    ended_at: datetime | None = None
    phase: TaskPhase | None = None
    exit_code: int | None = None
    signal: int | None = None
    reason: TaskReason | None = None
    message: str | None = None


class TaskInfo(Struct):
    """A task as readers of its group see it. ``env`` and ``attempts`` come with ``get``
    (and verbose queries); ``cancel_pending`` is true while a cancelled task's process is
    still being killed by its worker."""

    uuid: uuid.UUID
    group: str
    seq: int
    creator: str
    state: TaskState
    command: list[str]
    tags: list[str]
    labels: list[str]
    priority: int
    timeout: float
    terminal_output: bool
    created_at: datetime
    attempt: int
    max_attempts: int
    retries: int
    phase: TaskPhase | None = None
    reason: TaskReason | None = None
    message: str | None = None
    worker: uuid.UUID | None = None
    exit_code: int | None = None
    signal: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancelled_by: str | None = None
    cancel_pending: bool = False
    resources: list[Resource] = []
    depends_on: list[Dependency] = []
    array_id: uuid.UUID | None = None
    array_index: int | None = None
    upstream: uuid.UUID | None = None
    rerun_of: uuid.UUID | None = None
    env: dict[str, str] | None = None
    attempts: list[AttemptInfo] | None = None
    retry_delay: str | float | None = None
    array_limit: int | None = None
    # Tasks this one submitted through MITO_NEW_TASK (T7; with ``get``), or why it could not.
    downstream: list[uuid.UUID] | None = None
    downstream_error: str | None = None
    # Tasks that depend on this one (T6; with ``get``): the first ones by submission that the
    # caller may read, and how many the caller may read in all (more than listed: bounded).
    dependents: list[Dependency] | None = None
    dependents_total: int | None = None

    @property
    def dependents_unlisted(self) -> int:
        """How many of the caller's readable dependents the reply did not list."""
        return max(0, (self.dependents_total or 0) - len(self.dependents or []))


class TaskFilter(Struct):
    """Which tasks (FEATURES T5); lists mean any-of for states and creators, all-of (⊇) for
    tags and labels. With no group: every group the caller may read."""

    group: Name | None = None
    creators: Annotated[list[Name], msgspec.Meta(max_length=1000)] = []
    states: list[TaskState] = []
    tags: TagList = []
    labels: TagList = []
    exit_code: Comparison | None = None
    priority: Comparison | None = None
    worker: uuid.UUID | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    finished_after: datetime | None = None
    finished_before: datetime | None = None
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)] | None = None
    uuids: Annotated[list[uuid.UUID], msgspec.Meta(max_length=MAX_BATCH)] = []
    array: uuid.UUID | None = None  # the tasks of one array (T2)

    @property
    def empty(self) -> bool:
        return self == TaskFilter(group=None)


class TaskSort(enum.StrEnum):
    """What a query is ordered by; ties are broken by submission order, so every order is
    total and a cursor never repeats or skips. ``state`` ranks running, ready, pending,
    failed, cancelled, completed (in descending order); ``exit_code`` counts a signal N as
    128+N, as shells do; ``duration`` is of finished runs. Tasks without a worker, an exit
    code or a duration (not run, not ended yet) sort lowest: last when descending."""

    CREATED = "created"
    PRIORITY = "priority"
    STATE = "state"
    GROUP = "group"
    WORKER = "worker"
    EXIT_CODE = "exit_code"
    DURATION = "duration"


class SortOrder(enum.StrEnum):
    DESC = "desc"
    ASC = "asc"


class TaskQuery(TaskFilter):
    """A filter plus order and page: newest first by default; pass ``next_cursor`` of one
    page as ``cursor`` to get the next, stable under concurrent submissions."""

    sort: TaskSort = TaskSort.CREATED
    order: SortOrder = SortOrder.DESC
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_PAGE)] = 100
    offset: Annotated[int, msgspec.Meta(ge=0)] = 0
    cursor: Annotated[str, msgspec.Meta(max_length=512)] | None = None
    verbose: bool = False


class TaskPage(Struct):
    tasks: list[TaskInfo]
    total: int
    next_cursor: str | None = None


class TaskCancel(Struct):
    """Cancel by UUID list or by filter (exactly one); running tasks are killed by their
    workers. Tasks already finished are reported as unchanged, not as errors."""

    uuids: Annotated[list[uuid.UUID], msgspec.Meta(max_length=MAX_BATCH)] = []
    filter: TaskFilter | None = None

    def __post_init__(self) -> None:
        if bool(self.uuids) == (self.filter is not None):
            raise ValueError("give either 'uuids' or 'filter'")
        if self.filter is not None and self.filter.empty:
            raise ValueError("filter: name at least one condition (a group, states, tags ...)")


class TaskRef(Struct):
    uuid: uuid.UUID
    state: TaskState


class CancelReply(Struct):
    cancelled: list[uuid.UUID]
    unchanged: list[TaskRef]


class TaskChange(Struct):
    """Edit a queued (pending or ready) task; unset fields stay as they are (FEATURES T10)."""

    command: Command | msgspec.UnsetType = msgspec.UNSET
    env: dict[str, str] | msgspec.UnsetType = msgspec.UNSET
    tags: TagList | msgspec.UnsetType = msgspec.UNSET
    timeout: Duration | msgspec.UnsetType = msgspec.UNSET
    priority: Priority | msgspec.UnsetType = msgspec.UNSET
    terminal_output: bool | msgspec.UnsetType = msgspec.UNSET
    resources: (
        Annotated[list[Resource], msgspec.Meta(max_length=MAX_RESOURCES)] | msgspec.UnsetType
    ) = msgspec.UNSET

    def __post_init__(self) -> None:
        if self.command is not msgspec.UNSET:
            check_command(self.command)
        if self.env is not msgspec.UNSET:
            check_env(self.env)
        if self.tags is not msgspec.UNSET:
            check_unique(self.tags, "tags")
        if self.timeout is not msgspec.UNSET:
            timeout_seconds(self.timeout)
        if self.resources is not msgspec.UNSET:
            check_unique([r.path for r in self.resources], "resources.path")
        if all(getattr(self, f) is msgspec.UNSET for f in self.__struct_fields__):
            raise ValueError("nothing to change: give at least one field")


class LabelsUpdate(Struct):
    """Replace all labels (an empty list removes them)."""

    labels: TagList

    def __post_init__(self) -> None:
        check_unique(self.labels, "labels")


class TagsUpdate(Struct):
    """Replace all tags (an empty list removes them)."""

    tags: TagList

    def __post_init__(self) -> None:
        check_unique(self.tags, "tags")
