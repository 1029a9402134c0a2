"""The Redis user workers write live logs with (FEATURES X5), set up by each coordinator.

Shipping 50,000 lines a second through the coordinator costs it a request and a database
check per batch; with Redis configured, workers can append to their tasks' log streams
themselves. They get a user of their own, never the coordinator's, restricted by a Redis
7 ACL to exactly that::

    ACL SETUSER <prefix>:log-shipper on #<sha256>… resetkeys %W~<prefix>:log:*
        resetchannels &<prefix>:wake:log:* -@all +xadd +pexpire +publish +ping

``%W~`` is write-only: the user can append to (and expire) log streams but read nothing,
not the events of any group, not a log, not another prefix's keys; ``&…`` lets it wake the
followers of a log and publish nowhere else.

Every coordinator start-up rotates the password: it adds a new random one and drops those
older than the last ``KEEP_PASSWORDS`` start-ups (their hashes are remembered in
``<prefix>:acl:log-shipper``, a key only coordinators can read). Adding and dropping are
single changes, so coordinators starting at once do not undo each other, and a worker
registered with a dropped password falls back to shipping through the coordinator when
Redis refuses it. A Redis without ACLs, or a coordinator user not allowed to manage them,
means no credentials are handed out (logged once); workers then ship through the coordinator.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError

from mitosis_sdk.schemas.events import RedisShipping
from mitosis_server.events.redis import COMMAND_TIMEOUT, CONNECT_TIMEOUT, glob_escaped

log = logging.getLogger(__name__)

KEEP_PASSWORDS = 4
COMMANDS = ("+xadd", "+pexpire", "+publish", "+ping")


def log_user_name(prefix: str) -> str:
    return f"{prefix}:log-shipper"


def log_user_rules(prefix: str) -> list[str]:
    """What the user may do (everything else is refused)."""
    escaped = glob_escaped(prefix)
    return [
        "resetkeys",
        f"%W~{escaped}:log:*",
        "resetchannels",
        f"&{escaped}:wake:log:*",
        "-@all",
        *COMMANDS,
    ]


def without_credentials(url: str) -> str:
    """``url`` with no user or password (workers get their own)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


async def provision_log_user(
    redis_url: str, prefix: str, worker_url: str, log_cap: int, idle_ttl: float
) -> RedisShipping | None:
    """Create or rotate the log user; what to hand to workers, or None (see the module)."""
    client = Redis.from_url(
        redis_url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=COMMAND_TIMEOUT
    )
    name, remembered = log_user_name(prefix), f"{prefix}:acl:log-shipper"
    password = secrets.token_urlsafe(32)
    digest = hashlib.sha256(password.encode()).hexdigest()
    try:
        async with client.pipeline(transaction=True) as pipe:
            pipe.lpush(remembered, digest)
            pipe.lrange(remembered, KEEP_PASSWORDS, -1)
            pipe.ltrim(remembered, 0, KEEP_PASSWORDS - 1)
            _, dropped, _ = await pipe.execute()
        current = await client.acl_getuser(name) or {}
        valid = {h.decode() if isinstance(h, bytes) else h for h in current.get("passwords", [])}
        removals = [f"!{h.decode()}" for h in dropped if h.decode() in valid]
        await client.execute_command(
            "ACL", "SETUSER", name, "on", f"#{digest}", *removals, *log_user_rules(prefix)
        )
    except (RedisError, OSError) as exc:
        log.warning(
            "events.log_user_unavailable error=%s; workers ship live logs through the coordinator",
            exc,
        )
        return None
    finally:
        await client.aclose()
    log.info("events.log_user_ready user=%s", name)
    return RedisShipping(
        url=worker_url,
        username=name,
        password=password,
        key_prefix=f"{prefix}:log:",
        wake_prefix=f"{prefix}:wake:log:",
        log_cap=log_cap,
        idle_ttl=idle_ttl,
    )
