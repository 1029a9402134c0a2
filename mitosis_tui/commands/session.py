"""The state one batch invocation shares across its commands: settings, client, output.

Authentication follows FEATURES A1: a cached token for (coordinator, user) is used until the
coordinator rejects it; then, if a password was given, the session logs in again once.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx

from mitosis_sdk import errors
from mitosis_sdk.auth import CredentialCache
from mitosis_sdk.client import DEFAULT_URL, AsyncClient
from mitosis_tui.commands.output import Output
from mitosis_tui.config import ClientSettings

T = TypeVar("T")


class UsageError(Exception):
    """Bad command line: exit status 2 with the message."""


class NotLoggedIn(errors.Unauthorized):
    pass


class CommandSession:
    def __init__(
        self,
        settings: ClientSettings,
        output: Output,
        *,
        cache: CredentialCache | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.out = output
        self.cache = cache or CredentialCache()
        last = self.cache.last(settings.coordinator)
        self.url = (settings.coordinator or (last[0] if last else DEFAULT_URL)).rstrip("/")
        self.username = settings.user or (last[1] if last and last[0] == self.url else None)
        self.client = AsyncClient(self.url, transport=transport, timeout=settings.timeout)

    async def close(self) -> None:
        await self.client.aclose()

    def password(self, given: str | None = None, prompt: str = "password: ") -> str:
        password = given or self.settings.password
        if password:
            return password
        if sys.stdin is not None and sys.stdin.isatty():
            return getpass.getpass(prompt)
        raise UsageError("a password is needed: pass it as an argument, -p or MITO_PASSWORD")

    async def login(self, username: str, password: str) -> None:
        reply = await self.client.login(username, password)
        self.username = reply.username
        self.cache.put(self.url, reply.username, reply.token, reply.expires_at)

    def _use_cached_token(self) -> bool:
        if not self.username:
            return False
        cached = self.cache.get(self.url, self.username)
        if cached is None:
            return False
        self.client.token = cached.token
        return True

    async def call(self, operation: Callable[[AsyncClient], Awaitable[T]]) -> T:
        """Run an authenticated call, logging in (or again) when a password allows it."""
        if self.client.token is None and not self._use_cached_token():
            await self._login_or_fail()
        try:
            return await operation(self.client)
        except errors.Unauthorized:
            if not (self.settings.password and self.username):
                if self.username:
                    self.cache.forget(self.url, self.username)
                raise
            await self.login(self.username, self.settings.password)
            return await operation(self.client)

    async def _login_or_fail(self) -> None:
        if self.username and self.settings.password:
            await self.login(self.username, self.settings.password)
            return
        who = f" as {self.username}" if self.username else ""
        raise NotLoggedIn(
            f"not logged in{who} at {self.url}: run `mitosis-tui --batch -c {self.url} login`",
            code=errors.ErrorCode.UNAUTHORIZED,
        )
