"""Who is calling: login, token checks with a short cache, logout and password changes.

A token names its session and the user's token version. A request is accepted while the
session is not revoked, the version still matches and the user is active. Those facts are
cached per session for at most ``CHECK_TTL`` seconds, so the hot path costs no query and a
revocation (logout, password change, lock, delete) takes effect within that time on every
coordinator, with or without Redis.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mitosis_sdk.errors import ErrorCode
from mitosis_sdk.schemas import TokenReply, UserState
from mitosis_server.db.models import Session, User
from mitosis_server.errors import DomainError
from mitosis_server.services.passwords import hash_password, verify_password
from mitosis_server.services.ratelimit import FailureLimiter
from mitosis_server.services.tokens import Claims, InvalidToken, TokenSigner

CHECK_TTL = 1.0
WRONG_LOGIN = "wrong username or password"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of one request."""

    user_id: int
    username: str
    is_admin: bool
    session_id: str
    token_expires_at: datetime
    worker_id: str | None = None


@dataclass(slots=True)
class _Check:
    checked_at: float
    principal: Principal | None
    refusal: DomainError | None


def unauthorized(message: str = "invalid or expired token; log in again") -> DomainError:
    return DomainError(ErrorCode.UNAUTHORIZED, message)


def refusal_for_state(state: str) -> DomainError | None:
    if state == UserState.LOCKED:
        return DomainError(ErrorCode.ACCOUNT_LOCKED, "this account is locked; ask an administrator")
    if state == UserState.DELETED:
        return DomainError(ErrorCode.ACCOUNT_DELETED, "this account has been deleted")
    return None


class Authenticator:
    """Issues and checks tokens; one per coordinator process."""

    def __init__(
        self,
        signer: TokenSigner,
        token_lifetime: float,
        limiter: FailureLimiter,
        clock=time.monotonic,
    ) -> None:
        self.signer = signer
        self.token_lifetime = token_lifetime
        self.limiter = limiter
        self._clock = clock
        self._checks: dict[str, _Check] = {}
        # Set by the app to tell the other coordinators (A3: revocations within one second).
        self.on_forget: Callable[[str | None], object] | None = None

    async def login(
        self, db: AsyncSession, username: str, password: str, address: str | None
    ) -> TokenReply:
        keys = [f"user:{username}"] + ([f"addr:{address}"] if address else [])
        wait = self.limiter.retry_after(*keys)
        if wait > 0:
            raise DomainError(
                ErrorCode.RATE_LIMITED,
                f"too many failed logins; try again in {int(wait) + 1} s",
                {"retry_after": int(wait) + 1},
            )
        user = await db.scalar(select(User).where(User.name == username))
        valid = await verify_password(user.password_hash if user else None, password)
        if user is None or not valid:
            self.limiter.record_failure(*keys)
            raise unauthorized(WRONG_LOGIN)
        refusal = refusal_for_state(user.state)
        if refusal is not None:
            raise refusal
        self.limiter.reset(f"user:{username}")
        token, expires_at = await self.open_session(db, user, address)
        return TokenReply(token=token, username=user.name, expires_at=expires_at)

    async def open_session(
        self,
        db: AsyncSession,
        user: User,
        address: str | None,
        worker_id: str | None = None,
        lifetime: float | None = None,
    ) -> tuple[str, datetime]:
        """A new session row and its signed token."""
        expires_at = datetime.now(UTC) + timedelta(seconds=lifetime or self.token_lifetime)
        session_id = str(uuid.uuid4())
        db.add(
            Session(id=session_id, user_id=user.id, expires_at=expires_at, client_address=address)
        )
        claims = Claims(
            user_id=user.id,
            username=user.name,
            session_id=session_id,
            version=user.token_version,
            expires_at=expires_at,
            worker_id=worker_id,
        )
        await db.flush()
        return self.signer.sign(claims), expires_at

    async def authenticate(self, db_factory, token: str) -> Principal:
        """The principal behind ``token``; DomainError 401/403 otherwise."""
        try:
            claims = self.signer.verify(token)
        except InvalidToken:
            raise unauthorized() from None
        now = self._clock()
        check = self._checks.get(claims.session_id)
        if check is None or now - check.checked_at > CHECK_TTL:
            async with db_factory() as db:
                check = await self._check(db, claims, now)
            self._checks[claims.session_id] = check
            self._evict(now)
        if check.refusal is not None:
            raise check.refusal
        assert check.principal is not None
        return check.principal

    async def _check(self, db: AsyncSession, claims: Claims, now: float) -> _Check:
        row = (
            await db.execute(
                select(Session.revoked, User.state, User.token_version, User.is_admin, User.name)
                .join(User, User.id == Session.user_id)
                .where(Session.id == claims.session_id, Session.user_id == claims.user_id)
            )
        ).one_or_none()
        if row is None or row.revoked or row.token_version != claims.version:
            return _Check(now, None, unauthorized("this session has ended; log in again"))
        refusal = refusal_for_state(row.state)
        if refusal is not None:
            return _Check(now, None, refusal)
        principal = Principal(
            user_id=claims.user_id,
            username=row.name,
            is_admin=row.is_admin,
            session_id=claims.session_id,
            token_expires_at=claims.expires_at,
            worker_id=claims.worker_id,
        )
        return _Check(now, principal, None)

    def _evict(self, now: float) -> None:
        if len(self._checks) > 10_000:
            stale = [k for k, c in self._checks.items() if now - c.checked_at > CHECK_TTL]
            for key in stale:
                del self._checks[key]

    def forget(self, session_id: str | None = None) -> None:
        """Drop cached checks (one session, or all) so the next request re-reads them, here
        and (through ``on_forget``) on every other coordinator."""
        self.drop(session_id)
        if self.on_forget is not None:
            self.on_forget(session_id)

    def drop(self, session_id: str | None = None) -> None:
        """Drop cached checks in this process only."""
        if session_id is None:
            self._checks.clear()
        else:
            self._checks.pop(session_id, None)


async def logout(db: AsyncSession, principal: Principal, everywhere: bool) -> None:
    if everywhere:
        await revoke_all_sessions(db, principal.user_id)
    else:
        await db.execute(
            update(Session).where(Session.id == principal.session_id).values(revoked=True)
        )


async def revoke_all_sessions(db: AsyncSession, user_id: int) -> None:
    """End every session of a user at once (bumping the version also kills worker tokens)."""
    await db.execute(
        update(User).where(User.id == user_id).values(token_version=User.token_version + 1)
    )
    await db.execute(update(Session).where(Session.user_id == user_id).values(revoked=True))


async def change_own_password(
    db: AsyncSession, principal: Principal, old_password: str, new_password: str
) -> None:
    user = await db.get_one(User, principal.user_id)
    if not await verify_password(user.password_hash, old_password):
        raise DomainError(ErrorCode.FORBIDDEN, "the current password is wrong")
    user.password_hash = await hash_password(new_password)
    await revoke_all_sessions(db, user.id)
