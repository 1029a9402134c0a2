"""HTTP plumbing shared by every resource API: one httpx client, typed errors, decoding."""

from __future__ import annotations

from typing import Any, TypeVar

import httpx
import msgspec

from mitosis_sdk.client.http11 import lean_transport_for
from mitosis_sdk.errors import ConnectionFailed, error_from_body

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:5000"


class BaseClient:
    """Sends requests with the bearer token and turns error bodies into exceptions.

    ``transport`` is injectable so tests (and embedders) can call a Litestar app in-process
    with ``httpx.ASGITransport``; by default the coordinator is spoken to through the lean
    keep-alive transport (``http11``), unless a proxy from the environment applies.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        token: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            transport=transport or lean_transport_for(self.base_url),
            timeout=timeout,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        result: type[T] | None = None,
        http_timeout: float | None = None,
    ) -> T | None:
        """One API call: encode ``body`` (a Struct), decode the reply into ``result``.

        ``http_timeout`` overrides the client's timeout for calls that park on purpose
        (long polls).
        """
        content = None if body is None else msgspec.json.encode(body)
        headers = self._headers()
        if content is not None:
            headers["Content-Type"] = "application/json"
        extra = {} if http_timeout is None else {"timeout": http_timeout}
        try:
            response = await self._http.request(
                method,
                path,
                content=content,
                params=_clean(params),
                headers=headers,
                **extra,
            )
        except httpx.TimeoutException as exc:
            raise ConnectionFailed(f"the coordinator at {self.base_url} timed out ({exc})") from exc
        except httpx.TransportError as exc:
            raise ConnectionFailed(
                f"cannot reach the coordinator at {self.base_url}: {exc or type(exc).__name__}"
            ) from exc
        if response.status_code >= 400:
            raise error_from_body(response.status_code, response.content)
        if result is None or response.status_code == 204 or not response.content:
            return None
        return msgspec.json.decode(response.content, type=result)


def _clean(params: dict[str, Any] | None) -> dict[str, Any] | None:
    """Drop unset query parameters; lists become repeated parameters."""
    if not params:
        return None
    return {k: v for k, v in params.items() if v is not None and v != []}
