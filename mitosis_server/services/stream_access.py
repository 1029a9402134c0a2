"""Open streams keep their right to exist: revoked sessions and lost groups end them (A3).

A request's token is checked once, when it arrives; an event or log stream may stay open for
days. :class:`StreamAccess` re-checks every open stream of this coordinator each ``interval``
(default one second) in one pass of two queries, whatever the number of streams: the
sessions behind them (revoked by logout or a password change, expired, user locked or
deleted) and the memberships of their users. ``poke`` runs a pass at once (a revocation
broadcast from any coordinator does), so with Redis a logout ends streams in milliseconds;
the interval bounds it without.

What ends a stream, with the error its last item carries:

* the session is over → ``unauthorized`` (or ``account_locked`` / ``account_deleted``);
* a group the stream was opened for (``group=`` or a task's log) is no longer readable →
  ``forbidden``: the SDK raises, as a new request would;
* the caller's groups changed under a stream that follows "all my groups" (or an admin lost
  the admin flag) → ``access_changed``: the SDK reconnects from its cursor and the new
  connection filters by the new set, so nothing of a group left behind is delivered after.

Each stream says how to end it (``on_end``); this module knows nothing of HTTP.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mitosis_sdk.errors import ErrorCode
from mitosis_sdk.schemas import UserState
from mitosis_sdk.schemas.events import StreamError
from mitosis_sdk.waiting import wait_event
from mitosis_server.db.engine import reading
from mitosis_server.db.models import Group, Membership, Session, User
from mitosis_server.services.auth import Principal

log = logging.getLogger(__name__)

CHECK_INTERVAL = 1.0
POKE_DELAY = 0.1
ACCESS_CHANGED = "access_changed"


@dataclass(eq=False)
class StreamWatch:
    """One open stream: who opened it, for which groups, and how to end it."""

    principal: Principal
    groups: frozenset[str] | None  # None: every group (an admin following everything)
    explicit: bool  # the groups were named (group=, a task's log): each must stay readable
    on_end: Callable[[StreamError], None]


@dataclass(frozen=True, slots=True)
class _Facts:
    revoked: bool
    expires_at: datetime
    state: str
    is_admin: bool


def refusal(watch: StreamWatch, facts: _Facts | None, member_of: set[str]) -> StreamError | None:
    """Why ``watch`` may not go on, given its session's facts and its user's groups."""
    # The account's state first: locking also revokes, and "locked" says more.
    if facts is not None and facts.state == UserState.LOCKED:
        return StreamError(error=ErrorCode.ACCOUNT_LOCKED.value, message="this account is locked")
    if facts is not None and facts.state == UserState.DELETED:
        return StreamError(
            error=ErrorCode.ACCOUNT_DELETED.value, message="this account has been deleted"
        )
    if facts is None or facts.revoked or facts.expires_at <= datetime.now(UTC):
        return StreamError(
            error=ErrorCode.UNAUTHORIZED.value, message="this session has ended; log in again"
        )
    if watch.explicit:
        lost = sorted((watch.groups or set()) - member_of) if not facts.is_admin else []
        if lost:
            return StreamError(
                error=ErrorCode.FORBIDDEN.value,
                message=f"you no longer have access to group {lost[0]!r}",
            )
        return None
    now_sees = None if facts.is_admin else frozenset(member_of)
    if now_sees != watch.groups:
        return StreamError(
            error=ACCESS_CHANGED, message="your groups changed; reconnect to follow the new set"
        )
    return None


class StreamAccess:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], interval: float = CHECK_INTERVAL
    ) -> None:
        self.sessions = sessions
        self.interval = interval
        self._watches: set[StreamWatch] = set()
        self._poked = asyncio.Event()

    def watch(
        self,
        principal: Principal,
        groups: set[str] | None,
        explicit: bool,
        on_end: Callable[[StreamError], None],
    ) -> StreamWatch:
        watch = StreamWatch(
            principal, None if groups is None else frozenset(groups), explicit, on_end
        )
        self._watches.add(watch)
        return watch

    def release(self, watch: StreamWatch) -> None:
        self._watches.discard(watch)

    def poke(self) -> None:
        """Check now (a session was revoked somewhere)."""
        self._poked.set()

    @property
    def open(self) -> int:
        return len(self._watches)

    async def check(self) -> int:
        """One pass over every open stream; how many it ended."""
        watches = list(self._watches)
        if not watches:
            return 0
        async with reading(self.sessions) as db:
            facts, groups = await _facts(db, watches)
        ended = 0
        for watch in watches:
            reason = refusal(
                watch,
                facts.get(watch.principal.session_id),
                groups.get(watch.principal.user_id, set()),
            )
            if reason is not None and watch in self._watches:
                self._watches.discard(watch)
                log.info(
                    "stream.access_ended user=%s error=%s", watch.principal.username, reason.error
                )
                watch.on_end(reason)
                ended += 1
        return ended

    async def run(self) -> None:
        """Check every ``interval``, and soon after a poke, until cancelled."""
        while True:
            if await wait_event(self._poked, self.interval):
                # A poke comes from the request that revokes, before its commit: give the
                # commit a moment, so this pass already sees it.
                await asyncio.sleep(POKE_DELAY)
            self._poked.clear()
            try:
                await self.check()
            except Exception:  # a database hiccup must not stop the checks
                log.exception("stream.access_check_failed")


async def _facts(
    db: AsyncSession, watches: list[StreamWatch]
) -> tuple[dict[str, _Facts], dict[int, set[str]]]:
    sessions = {w.principal.session_id for w in watches}
    users = {w.principal.user_id for w in watches}
    rows = await db.execute(
        select(Session.id, Session.revoked, Session.expires_at, User.state, User.is_admin)
        .join(User, User.id == Session.user_id)
        .where(Session.id.in_(sessions))
    )
    facts = {r.id: _Facts(r.revoked, r.expires_at, r.state, r.is_admin) for r in rows}
    groups: dict[int, set[str]] = {}
    for user_id, name in await db.execute(
        select(Membership.user_id, Group.name)
        .join(Group, Group.id == Membership.group_id)
        .where(Membership.user_id.in_(users))
    ):
        groups.setdefault(user_id, set()).add(name)
    return facts, groups
