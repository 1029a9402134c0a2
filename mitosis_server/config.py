"""The coordinator's settings: the ``[coordinator]`` section, ``MITO_*`` variables and flags.

Read once at start-up and passed to :func:`mitosis_server.app.create_app`; nothing in the
server reads the environment after that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec
import platformdirs

from mitosis_sdk.config import DURATION, SIZE, Option


def default_data_dir() -> str:
    return platformdirs.user_data_dir("mitosis")


class CoordinatorSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    bind: Annotated[str, Option("HOST:PORT to listen on")] = "127.0.0.1:5000"
    data_dir: Annotated[str, Option("where the embedded database, objects and keys live")] = (
        msgspec.field(default_factory=default_data_dir)
    )
    db: Annotated[
        str | None,
        Option("database URL: postgres://user@host/db or sqlite:///path (default: embedded)"),
    ] = None
    redis: Annotated[str | None, Option("redis:// URL of the event bus (default: in-process)")] = (
        None
    )
    redis_prefix: Annotated[
        str, Option("prefix of every Redis key and channel (one per deployment)")
    ] = "mitosis"
    redis_log_shipping: Annotated[
        bool,
        Option(
            "hand workers a write-only Redis user for their live logs (Redis 7 ACLs);"
            " --no-redis-log-shipping: through the coordinator"
        ),
    ] = True
    redis_worker_url: Annotated[
        str | None,
        Option("Redis as workers reach it, for live logs (default: redis without credentials)"),
    ] = None
    event_history: Annotated[int, Option("task/worker events kept for resuming streams")] = 100_000
    log_history: Annotated[int, Option("live log lines kept per task (older ones drop)")] = 10_000
    s3_url: Annotated[str | None, Option("S3 endpoint URL (default: local object dir)")] = None
    s3_access_key: Annotated[str | None, Option("S3 access key id")] = None
    s3_secret_key: Annotated[str | None, Option("S3 secret access key")] = None
    s3_region: Annotated[str, Option("S3 region")] = "us-east-1"
    s3_bucket_artifacts: Annotated[str, Option("S3 bucket of task artifacts")] = "mitosis-artifacts"
    s3_bucket_attachments: Annotated[str, Option("S3 bucket of group attachments")] = (
        "mitosis-attachments"
    )
    s3_path_style: Annotated[
        bool, Option("S3 path-style URLs (MinIO, Ceph); --no-s3-path-style for virtual hosts")
    ] = True
    s3_public_url: Annotated[
        str | None,
        Option("S3 endpoint as workers and clients reach it, if not s3_url (URLs are signed for)"),
    ] = None
    public_url: Annotated[
        str | None,
        Option("this coordinator's URL as workers and clients reach it (default: http://BIND)"),
    ] = None
    url_lifetime: Annotated[
        float, Option("lifetime of upload/download URLs (uploads may complete within 2x)", DURATION)
    ] = 3600.0
    multipart_threshold: Annotated[
        int | None,
        Option("files larger than this go up in parts (default: 256MiB; local store: 5GiB)", SIZE),
    ] = None
    multipart_part_size: Annotated[int, Option("size of each part of a large upload", SIZE)] = (
        64 * 2**20
    )
    admin_user: Annotated[str, Option("first admin, created on first start")] = "mitosis_admin"
    admin_password: Annotated[str, Option("first admin's password (change it!)")] = "mitosis_admin"
    jwt_private_key: Annotated[
        str | None, Option("Ed25519 private key PEM (default: DATA_DIR/keys/jwt.pem)")
    ] = None
    jwt_public_key: Annotated[
        str | None, Option("Ed25519 public key PEM (default: DATA_DIR/keys/jwt.pub.pem)")
    ] = None
    token_lifetime: Annotated[float, Option("access token lifetime", DURATION)] = 7 * 86400.0
    heartbeat_timeout: Annotated[float, Option("a worker silent this long is lost", DURATION)] = (
        120.0
    )
    max_attempts: Annotated[
        int, Option("attempts a task gets when its workers are lost or stop (then: failed)")
    ] = 3
    liveness_interval: Annotated[
        float, Option("how often to look for lost workers and overdue tasks", DURATION)
    ] = 5.0
    report_margin: Annotated[
        float,
        Option("a running task silent for its timeout plus this is treated as lost", DURATION),
    ] = 600.0
    default_group_quota: Annotated[int, Option("groups a new user may create")] = 8
    default_storage_quota: Annotated[int, Option("storage quota of a new group", SIZE)] = 16 * 10**9
    password_hash_memory: Annotated[int, Option("argon2id memory cost per password hash", SIZE)] = (
        64 * 2**20
    )
    password_hash_rounds: Annotated[int, Option("argon2id time cost (iterations)")] = 3
    login_attempts: Annotated[
        int, Option("failed logins allowed per user and per address per window")
    ] = 10
    login_window: Annotated[float, Option("window of the login rate limit", DURATION)] = 300.0
    max_body: Annotated[int, Option("largest accepted request body", SIZE)] = 64 * 2**20
    log_format: Annotated[str, Option("log format: text or json")] = "text"
    log_file: Annotated[str | None, Option("also log to this file (rotated)")] = None
    log_level: Annotated[str, Option("log level")] = "info"

    @property
    def host(self) -> str:
        return self.bind.rpartition(":")[0] or "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self.bind.rpartition(":")[2])

    @property
    def database_url(self) -> str:
        return self.db or f"sqlite:///{Path(self.data_dir) / 'mitosis.sqlite3'}"

    @property
    def coordinator_url(self) -> str:
        """Where workers and clients reach this coordinator (the local store's URLs)."""
        return (self.public_url or f"http://{self.bind}").rstrip("/")

    @property
    def objects_dir(self) -> Path:
        return Path(self.data_dir) / "objects"

    @property
    def objects_key_path(self) -> Path:
        return Path(self.data_dir) / "keys" / "objects.key"

    @property
    def private_key_path(self) -> Path:
        return Path(self.jwt_private_key or Path(self.data_dir) / "keys" / "jwt.pem")

    @property
    def public_key_path(self) -> Path:
        return Path(self.jwt_public_key or Path(self.data_dir) / "keys" / "jwt.pub.pem")

    def validate(self) -> None:
        """Cross-field checks msgspec cannot express; raises ValueError with the option."""
        host, _, port = self.bind.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"option 'bind': expected HOST:PORT, got {self.bind!r}")
        if self.log_format not in ("text", "json"):
            raise ValueError(f"option 'log_format': expected text or json, got {self.log_format!r}")
        if self.db is not None:
            from mitosis_server.db.dialects import normalise_url

            try:
                normalise_url(self.db)
            except ValueError as exc:
                raise ValueError(f"option 'db': {exc}") from None
        for name in ("redis", "redis_worker_url"):
            value = getattr(self, name)
            if value is not None and not value.startswith(("redis://", "rediss://")):
                raise ValueError(f"option {name!r}: expected a redis:// URL, got {value!r}")
        if self.s3_url is not None and not self.s3_url.startswith(("http://", "https://")):
            raise ValueError(f"option 's3_url': expected an http(s):// URL, got {self.s3_url!r}")
        for name in ("s3_public_url", "public_url"):
            value = getattr(self, name)
            if value is not None and not value.startswith(("http://", "https://")):
                raise ValueError(f"option {name!r}: expected an http(s):// URL, got {value!r}")
        if not 1 <= self.url_lifetime <= 7 * 86400:
            raise ValueError("option 'url_lifetime' must be between 1s and 7d")
        threshold = self.multipart_threshold or 5 * 2**30
        if not 5 * 2**20 <= self.multipart_part_size <= threshold <= 5 * 2**30:
            raise ValueError(
                "options 'multipart_part_size' (at least 5MiB) and 'multipart_threshold'"
                " (at least one part, at most 5GiB) are out of range"
            )
        if self.password_hash_memory < 64 * 1024 or self.password_hash_rounds < 1:
            raise ValueError(
                "options 'password_hash_memory' (at least 64KiB) and 'password_hash_rounds'"
                " (at least 1) are too low"
            )
        for name in ("token_lifetime", "heartbeat_timeout", "liveness_interval", "report_margin"):
            if getattr(self, name) <= 0:
                raise ValueError(f"option {name!r} must be positive")
        if not 1 <= self.max_attempts <= 100:
            raise ValueError("option 'max_attempts' must be between 1 and 100")
