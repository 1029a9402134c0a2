"""The Redis event bus: what lets several coordinators behave as one (needs Redis 7+).

Layout under ``<prefix>:`` (one prefix per Mitosis installation sharing a Redis):

* ``events``: a Stream of every published :class:`Event` (``XADD MAXLEN ~ event_cap``);
* ``log:<task>``: a Stream per task of LogChunk entries, each with the explicit id
  ``<attempt>-<last line>`` (so Redis itself refuses a batch that is not after the newest:
  shipped twice, or by a superseded attempt), trimmed with ``MINID`` (exactly: entries are
  chunks, so they are few) to the chunks holding the newest ``log_cap`` lines, then a LogEnd
  with an automatic id (after every line); expiring ``log_idle_ttl`` after the last write,
  or the end's ``ttl`` after it ends. Workers may append here themselves (events/log_user.py);
* pub/sub channels ``wake:<topic>`` (notify, and "stream appended") and ``bc:<topic>``
  (broadcasts), carrying the sender's id so a process skips its own echo (it has already
  woken its local waiters).

Each Stream entry has one field ``d``: the item as msgspec JSON. A cursor is the Redis entry
id. A cursor with something after it already trimmed is detected from ``XINFO STREAM``
(entries ever added vs kept, and the first kept entry), read atomically with the range.

One pub/sub connection per process subscribes to both channel patterns at start, so a
waiter registers locally and instantly. Redis is an accelerator here, never a dependency of
a request: writes that fail are logged once per outage and skipped, waits time out (callers
poll), followers re-read every second, and the subscriber reconnects with backoff, then
wakes every local waiter so nothing waits out a wake-up lost during the gap. Approximate
trimming (``~``) keeps at least the cap and at most one Redis stream node (100 entries) more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from mitosis_server.events.base import EventBus, EventBusUnavailable
from mitosis_server.events.cursors import (
    Position,
    check_position,
    cursor_of,
    floor_of,
    parse_position,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 2.0
COMMAND_TIMEOUT = 5.0
KEEPALIVE = 10.0
RECONNECT_MIN = 0.1
RECONNECT_MAX = 5.0
DATA = b"d"
FAILURES = (RedisError, OSError)

_broadcast = msgspec.json.Decoder(tuple[str, str])


def _missing(result: Any) -> bool:
    """XINFO's answer for a stream that does not exist (never written, or expired)."""
    return isinstance(result, ResponseError) and "no such key" in str(result).lower()


def _bounds(key: str, info: Any) -> tuple[Position, Position]:
    """The oldest position one may resume from, and the newest ever added, from XINFO STREAM
    (Redis 7 counts the entries ever added, so trimming shows as added > kept)."""
    if _missing(info):
        return (0, 0), (0, 0)
    latest = parse_position(info["last-generated-id"])
    if info.get("entries-added", info["length"]) <= info["length"]:
        return (0, 0), latest
    first = info.get("first-entry")
    if not first:
        return latest, latest
    entry_id, fields = first
    return floor_of(key, parse_position(entry_id), fields.get(DATA, b"")), latest


def glob_escaped(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


class RedisEventBus(EventBus):
    def __init__(self, url: str, prefix: str = "mitosis", **limits: Any) -> None:
        super().__init__(**limits)
        # One quick retry covers a pooled connection Redis dropped; more would stall requests.
        self._redis = Redis.from_url(
            url,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=COMMAND_TIMEOUT,
            retry=Retry(NoBackoff(), 1),
        )
        self._prefix = prefix
        self._origin = uuid.uuid4().hex
        self._listener: asyncio.Task | None = None
        self._first_attempt = asyncio.Event()
        self._down = False

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="event-bus-subscriber")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2 * CONNECT_TIMEOUT):
                await self._first_attempt.wait()

    async def close(self) -> None:
        await super().close()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._redis.aclose()

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except FAILURES:
            return False

    async def _append(
        self, key: str, items: list[bytes], cap: int, ttl: float | None
    ) -> str | None:
        name = self._key(key)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for item in items:
                    pipe.xadd(name, {DATA: item}, maxlen=cap, approximate=True)
                if ttl is not None:
                    pipe.pexpire(name, max(1, int(ttl * 1000)))
                pipe.publish(self._channel("wake", key), self._origin)
                results = await pipe.execute()
        except FAILURES as exc:
            self._went_down(exc)
            return None
        self._came_back()
        return results[len(items) - 1].decode()

    async def _append_at(
        self, key: str, position: Position, item: bytes, keep_from: Position, ttl: float
    ) -> bool:
        name = self._key(key)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xadd(
                    name,
                    {DATA: item},
                    id=cursor_of(position),
                    minid=cursor_of(keep_from),
                    approximate=False,  # exact: a chunk holds many lines, and few come
                )
                pipe.pexpire(name, max(1, int(ttl * 1000)))
                pipe.publish(self._channel("wake", key), self._origin)
                added, *_ = await pipe.execute(raise_on_error=False)
        except FAILURES as exc:
            self._went_down(exc)
            return False
        self._came_back()
        if isinstance(added, ResponseError):
            if "equal or smaller" not in str(added):
                log.warning("events.append_refused key=%s error=%s", key, added)
            return False
        return True

    async def _range(self, key: str, after: str | None, limit: int) -> list[tuple[str, bytes]]:
        position = None if after is None else parse_position(after)
        name = self._key(key)
        try:
            # One transaction: the bounds describe exactly the stream the range was read from.
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xrange(name, "-" if after is None else f"({after}", "+", count=limit)
                pipe.xinfo_stream(name)
                entries, info = await pipe.execute(raise_on_error=False)
            for result in (entries, info):
                if isinstance(result, ResponseError) and not _missing(result):
                    raise result
        except FAILURES as exc:
            self._went_down(exc)
            raise EventBusUnavailable() from exc
        self._came_back()
        if after is not None and position is not None:
            check_position(after, position, *_bounds(key, info))
        return [(entry_id.decode(), fields.get(DATA, b"")) for entry_id, fields in entries]

    async def _tail(
        self,
        key: str,
        after: str,
        limit: int,
        timeout: float,  # noqa: ASYNC109
    ) -> list[tuple[str, bytes]]:
        """One blocking XREAD: Redis answers as soon as an entry is added, on any coordinator,
        without waiting for the pub/sub wake-up."""
        try:
            reply = await self._redis.xread(
                {self._key(key): after}, count=limit, block=max(1, int(timeout * 1000))
            )
        except FAILURES as exc:
            self._went_down(exc)
            raise EventBusUnavailable() from exc
        self._came_back()
        if not reply:
            return []
        return [(entry_id.decode(), fields.get(DATA, b"")) for entry_id, fields in reply[0][1]]

    def _order(self, cursor: str) -> Position:
        return parse_position(cursor)

    async def _latest(self, key: str) -> str:
        try:
            info = await self._redis.xinfo_stream(self._key(key))
        except ResponseError as exc:
            if _missing(exc):
                return "0-0"
            self._went_down(exc)
            raise EventBusUnavailable() from exc
        except FAILURES as exc:
            self._went_down(exc)
            raise EventBusUnavailable() from exc
        self._came_back()
        return info["last-generated-id"].decode()

    async def _send_wake(self, topic: str) -> None:
        await self._publish(self._channel("wake", topic), self._origin)

    async def _send_broadcast(self, topic: str, message: str) -> None:
        payload = msgspec.json.encode((self._origin, message))
        await self._publish(self._channel("bc", topic), payload)

    async def _publish(self, channel: str, data: str | bytes) -> None:
        try:
            await self._redis.publish(channel, data)
        except FAILURES as exc:
            self._went_down(exc)
        else:
            self._came_back()

    # -- the subscriber ------------------------------------------------------------------

    async def _listen(self) -> None:
        delay = RECONNECT_MIN
        while True:
            pubsub = self._redis.pubsub()
            try:
                prefix = glob_escaped(self._prefix)
                await pubsub.psubscribe(f"{prefix}:wake:*", f"{prefix}:bc:*")
                async with asyncio.timeout(2 * CONNECT_TIMEOUT):
                    await self._confirmed(pubsub, 2)
                self._came_back()
                self._first_attempt.set()
                self._wake_all()
                delay = RECONNECT_MIN
                await self._receive(pubsub)
            except (*FAILURES, TimeoutError) as exc:
                self._went_down(exc)
            finally:
                self._first_attempt.set()
                with contextlib.suppress(*FAILURES):
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(2 * delay, RECONNECT_MAX)

    @staticmethod
    async def _confirmed(pubsub: PubSub, count: int) -> None:
        """Until Redis confirms the subscriptions, a publish could still pass us by."""
        while count:
            message = await pubsub.get_message(timeout=CONNECT_TIMEOUT)
            if message is not None and message["type"] == "psubscribe":
                count -= 1

    async def _receive(self, pubsub: PubSub) -> None:
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=KEEPALIVE)
            if message is None:
                if pinged:
                    raise RedisConnectionError("no answer to a ping on the pub/sub connection")
                await pubsub.ping()
                pinged = True
                continue
            pinged = False
            if message["type"] == "pmessage":
                self._dispatch(message["channel"].decode(errors="replace"), message["data"])

    def _dispatch(self, channel: str, data: bytes) -> None:
        kind, _, topic = channel.removeprefix(f"{self._prefix}:").partition(":")
        if kind == "wake":
            if data.decode(errors="replace") != self._origin:
                self._wake_local(topic)
            return
        try:
            origin, message = _broadcast.decode(data)
        except msgspec.DecodeError:
            log.warning("events.malformed_broadcast channel=%s", channel)
            return
        if origin != self._origin:
            self._deliver(topic, message)

    # -- helpers -------------------------------------------------------------------------

    def _key(self, key: str) -> str:
        return f"{self._prefix}:{key}"

    def _channel(self, kind: str, topic: str) -> str:
        return f"{self._prefix}:{kind}:{topic}"

    def _went_down(self, exc: BaseException) -> None:
        if not self._down:
            self._down = True
            log.warning(
                "events.redis_down error=%s; events are not stored and waits fall back to "
                "polling until Redis is back",
                exc,
            )

    def _came_back(self) -> None:
        if self._down:
            self._down = False
            log.info("events.redis_back")
