"""The TUI's link to one coordinator: the SDK client, who is logged in, the token cache.

Kept free of Textual so the login rules (cached token first, remember URL and user) read and
test like plain code; the app wraps every call in a Textual worker.
"""

from __future__ import annotations

import httpx

from mitosis_sdk.auth import CredentialCache
from mitosis_sdk.client import DEFAULT_URL, AsyncClient
from mitosis_sdk.schemas import WhoAmI

__all__ = ["Connection", "normalize_url"]


def normalize_url(url: str) -> str:
    """``host:port`` as people type it becomes ``http://host:port``; no trailing slash."""
    url = url.strip().rstrip("/")
    if url and "://" not in url:
        url = f"http://{url}"
    return url


class Connection:
    """One client at a time, pointed at the coordinator the user logged in to."""

    def __init__(
        self,
        url: str | None = None,
        username: str | None = None,
        *,
        cache: CredentialCache | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        transfer_transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.cache = cache or CredentialCache()
        last = self.cache.last(url)
        self.url = normalize_url(url or (last[0] if last else DEFAULT_URL))
        self.username = username or (last[1] if last and last[0] == self.url else None)
        self._transport = transport
        self._transfer_transport = transfer_transport
        self._timeout = timeout
        self.client = self._new_client()
        self._retired: list[AsyncClient] = []

    def _new_client(self) -> AsyncClient:
        return AsyncClient(
            self.url,
            transport=self._transport,
            transfer_transport=self._transfer_transport,
            timeout=self._timeout,
        )

    def use_cached_token(self) -> bool:
        """Load the cached token for (url, user) into the client; False when there is none."""
        if not self.username:
            return False
        cached = self.cache.get(self.url, self.username)
        if cached is None:
            return False
        self.client.token = cached.token
        return True

    async def login(self, url: str, username: str, password: str) -> WhoAmI:
        """Log in (switching coordinator if ``url`` differs) and cache the token."""
        url = normalize_url(url)
        if url != self.url:
            self._retired.append(self.client)
            self.url = url
            self.client = self._new_client()
        reply = await self.client.login(username, password)
        self.username = reply.username
        self.cache.put(self.url, reply.username, reply.token, reply.expires_at)
        return await self.client.whoami()

    def adopt(self, username: str | None) -> None:
        """Follow a login made on the shared client elsewhere (the ``:login`` command)."""
        if username:
            self.username = username

    def forget(self) -> None:
        """Drop the token: the coordinator refused it, or the user logged out."""
        self.client.token = None
        if self.username:
            self.cache.forget(self.url, self.username)

    async def logout(self) -> None:
        try:
            await self.client.logout()
        finally:
            self.forget()

    async def close(self) -> None:
        for client in [*self._retired, self.client]:
            await client.aclose()
        self._retired.clear()
