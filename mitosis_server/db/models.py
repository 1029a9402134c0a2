"""The database tables, as SQLAlchemy 2 declarative models.

Rows never leave the server: controllers convert them to the SDK's wire Structs. Times are
stored as UTC and always come back timezone-aware, on SQLite too.
"""

from __future__ import annotations

import uuid as uuid_
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every backend (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default="active")
    # Bumped by a password change, lock, delete or `logout --all`: older tokens stop working.
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    group_quota: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Group(Base):
    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    creator_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    personal: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default="active")
    storage_quota: Mapped[int] = mapped_column(BigInteger)
    storage_used: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The last per-group task number handed out (tasks.seq); bumped in the submit transaction.
    task_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class Membership(Base):
    __tablename__ = "memberships"
    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(8))


class Session(Base):
    """One login: its token names it, so `logout` can end exactly this one."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    client_address: Mapped[str | None] = mapped_column(String(64), nullable=True)


# --- tasks and workers (FEATURES T, S, W) ----------------------------------------------------
#
# Tags and labels live in their own tables (one row per value) so that the matching rule S1
# and the "⊇" filters are plain SQL on both backends; tasks also keep a JSON copy of their
# tags and labels for display, written by the same service functions as the rows.
# ``tasks.attempt`` is the number of the current (or last) attempt: every claim opens a
# ``task_attempts`` row with the next number, and a report must name an open attempt of the
# reporting worker, which fences out superseded attempts (T8).

BigId = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER only
READY = "ready"
RUNNING = "running"


class Worker(Base):
    __tablename__ = "workers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uuid: Mapped[uuid_.UUID] = mapped_column(Uuid, unique=True)
    creator_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    # online, draining, lost or stopped; "draining" is shown while ``drain`` is set.
    state: Mapped[str] = mapped_column(String(16))
    # Orders from its managers (FEATURES W4): take no new tasks; exit ("graceful"/"force").
    drain: Mapped[bool] = mapped_column(Boolean, default=False)
    shutdown: Mapped[str | None] = mapped_column(String(16), nullable=True)
    slots: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(64), default="")
    facts: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_heartbeat: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When it registered or last came back from ``lost``: how a sign of life tells that it
    # revived the worker (an UPDATE's RETURNING sees only the new row), so it is published.
    online_since: Mapped[datetime | None] = mapped_column(
        UTCDateTime, nullable=True, default=utcnow
    )
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (Index("ix_workers_state_heartbeat", "state", "last_heartbeat"),)


class WorkerTag(Base):
    __tablename__ = "worker_tags"

    worker_id: Mapped[int] = mapped_column(
        ForeignKey("workers.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(128), primary_key=True)


class WorkerLabel(Base):
    __tablename__ = "worker_labels"

    worker_id: Mapped[int] = mapped_column(
        ForeignKey("workers.id", ondelete="CASCADE"), primary_key=True
    )
    label: Mapped[str] = mapped_column(String(128), primary_key=True, index=True)


class WorkerGrant(Base):
    """A group's grant on a worker: read, write (its tasks may run there) or admin."""

    __tablename__ = "worker_grants"

    worker_id: Mapped[int] = mapped_column(
        ForeignKey("workers.id", ondelete="CASCADE"), primary_key=True
    )
    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(8))


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uuid: Mapped[uuid_.UUID] = mapped_column(Uuid, unique=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id"))
    seq: Mapped[int] = mapped_column(BigInteger)  # per group, from groups.task_seq
    creator_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    phase: Mapped[str | None] = mapped_column(String(16), nullable=True)
    reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    command: Mapped[list] = mapped_column(JSON)
    command_line: Mapped[str] = mapped_column(Text)  # shlex-joined, for display and search
    tags: Mapped[list] = mapped_column(JSON, default=list)
    labels: Mapped[list] = mapped_column(JSON, default=list)
    # env, resources, terminal_output, depends_on: what only the worker (or T6) reads.
    spec: Mapped[dict] = mapped_column(JSON, default=dict)
    timeout: Mapped[float] = mapped_column(Float)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[int | None] = mapped_column(
        ForeignKey("workers.id", ondelete="SET NULL"), nullable=True, index=True
    )
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    signal: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # A running attempt with no report by then is treated as lost (liveness monitor).
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cancelled_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    # Workflows (FEATURES T2 arrays, T7 downstream, T11 re-run).
    array_id: Mapped[uuid_.UUID | None] = mapped_column(Uuid, nullable=True, index=True)
    array_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    upstream_id: Mapped[int | None] = mapped_column(
        ForeignKey("tasks.id", ondelete="SET NULL"), nullable=True, index=True
    )
    rerun_of_id: Mapped[int | None] = mapped_column(
        ForeignKey("tasks.id", ondelete="SET NULL"), nullable=True
    )
    # Retries (T8): a requeued attempt is not claimed before this moment (backoff).
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Arrays (T2): at most this many of the array's tasks run at once (``%N``), else NULL.
    array_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)

    __table_args__ = (
        UniqueConstraint("group_id", "seq", name="uq_tasks_group_seq"),
        # Dispatch (S2): ready tasks by priority, then age; per group and across groups.
        Index(
            "ix_tasks_ready_group",
            "group_id",
            text("priority DESC"),
            "id",
            postgresql_where=text("state = 'ready'"),
            sqlite_where=text("state = 'ready'"),
        ),
        Index(
            "ix_tasks_ready",
            text("priority DESC"),
            "id",
            postgresql_where=text("state = 'ready'"),
            sqlite_where=text("state = 'ready'"),
        ),
        # Queries (T5): by group, newest first, optionally by state or creation time.
        Index("ix_tasks_group_id", "group_id", "id"),
        Index("ix_tasks_group_state", "group_id", "state", "id"),
        Index("ix_tasks_group_created", "group_id", "created_at"),
        # Fairness (S6): when a group last had a task start (``max(started_at)``).
        Index(
            "ix_tasks_group_started",
            "group_id",
            "started_at",
            postgresql_where=text("started_at IS NOT NULL"),
            sqlite_where=text("started_at IS NOT NULL"),
        ),
        # Throttled arrays (T2 ``%N``) with ready tasks, for the claim.
        Index(
            "ix_tasks_ready_throttled",
            "array_id",
            "array_limit",
            postgresql_where=text("state = 'ready' AND array_limit IS NOT NULL"),
            sqlite_where=text("state = 'ready' AND array_limit IS NOT NULL"),
        ),
        Index(
            "ix_tasks_running_deadline",
            "deadline_at",
            postgresql_where=text("state = 'running'"),
            sqlite_where=text("state = 'running'"),
        ),
    )


class TaskTag(Base):
    __tablename__ = "task_tags"

    task_id: Mapped[int] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(128), primary_key=True)

    __table_args__ = (Index("ix_task_tags_tag", "tag", "task_id"),)


class TaskLabel(Base):
    __tablename__ = "task_labels"

    task_id: Mapped[int] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    label: Mapped[str] = mapped_column(String(128), primary_key=True)

    __table_args__ = (Index("ix_task_labels_label", "label", "task_id"),)


class TaskAttempt(Base):
    """One run of a task on one worker; open (``ended_at`` NULL) while the worker holds it."""

    __tablename__ = "task_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    worker_id: Mapped[int | None] = mapped_column(
        ForeignKey("workers.id", ondelete="SET NULL"), nullable=True
    )
    # running, completed, failed, cancelled, lost, requeued
    outcome: Mapped[str] = mapped_column(String(16))
    phase: Mapped[str | None] = mapped_column(String(16), nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    signal: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (
        UniqueConstraint("task_id", "attempt", name="uq_task_attempts_task_attempt"),
        # A worker's open attempts: its busy slots, and what the liveness monitor releases.
        Index(
            "ix_task_attempts_open",
            "worker_id",
            postgresql_where=text("ended_at IS NULL"),
            sqlite_where=text("ended_at IS NULL"),
        ),
    )


class TaskDependency(Base):
    """``task`` waits for ``upstream`` under ``condition`` (FEATURES T6; used by workflows)."""

    __tablename__ = "task_dependencies"

    task_id: Mapped[int] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    upstream_id: Mapped[int] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    condition: Mapped[str] = mapped_column(String(16))


# --- files: attachments, artifacts and uploads in flight (FEATURES F1-F5) --------------------
#
# Rows here are files whose bytes are in the object store under ``object``, a name the
# coordinator makes up (never derived from a user's key), so a new version is written beside
# the old one and replaces it only when complete. An upload in flight is an ``uploads`` row
# holding its quota reservation; it becomes an attachment or artifact row on completion.
# ``groups.storage_used`` = the sizes of a group's attachments and artifacts (artifacts count
# against their task's group) + the sizes reserved by its uploads in flight.


class Attachment(Base):
    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(1024))  # normalised, at most 1024 bytes of UTF-8
    object: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str | None] = mapped_column(String(255), nullable=True)
    creator_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("group_id", "key", name="uq_attachments_group_key"),)


class Artifact(Base):
    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    # The task's group, which the artifact's size is charged to (and retention runs by).
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(16))  # result, exec-log, std-log
    object: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    attempt: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: by a user
    creator_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("task_id", "type", name="uq_artifacts_task_type"),
        Index("ix_artifacts_group_created", "group_id", "created_at"),
    )


class PendingUpload(Base):
    """An upload between begin and complete: its presigned object and its quota reservation.

    Completing turns it into an attachment (``key``) or an artifact (``task_id``, ``type``);
    aborting, or ``complete_by`` passing, gives the reservation back and drops the object.
    """

    __tablename__ = "uploads"

    id: Mapped[uuid_.UUID] = mapped_column(Uuid, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    bucket: Mapped[str] = mapped_column(String(16))  # attachments or artifacts
    object: Mapped[str] = mapped_column(String(255))
    multipart_id: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    size: Mapped[int] = mapped_column(BigInteger)  # declared, and reserved in the quota
    key: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    content_type: Mapped[str | None] = mapped_column(String(255), nullable=True)
    task_id: Mapped[int | None] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), nullable=True
    )
    type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # Set when a worker uploads for its attempt: completing re-checks that it still holds it.
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("workers.id"), nullable=True)
    attempt: Mapped[int | None] = mapped_column(Integer, nullable=True)
    creator_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    complete_by: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class FileRetention(Base):
    """A group's retention rule (FEATURES F5): artifacts older than ``artifact_days`` days
    are deleted by the sweeper. No row: kept until deleted."""

    __tablename__ = "file_retention"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    artifact_days: Mapped[int] = mapped_column(Integer)
