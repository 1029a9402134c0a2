"""HTTP plumbing shared by every resource API: one httpx client, typed errors, decoding.

An API call is one small request and one small answer, and a worker or a submitting script
makes hundreds a second, so :meth:`BaseClient.request` hands an ``httpx.Request`` to the
transport itself (``handle_async_request``, httpx's transport interface) instead of going
through ``AsyncClient.request``. Measured on a 2-core VM, the client's bookkeeping around the
transport -- the URL joined and parsed twice, cookies looked for in every answer, the auth
and redirect flows, event hooks -- was two thirds of a call's CPU, twice the wire's. None of
it serves this API: the coordinator sets no cookies, sends no redirects and takes the token
as a header. Streams and file transfers still go through the client; so does everything
when a proxy applies (the client routes it).
"""

from __future__ import annotations

from typing import Any, TypeVar

import httpx
import msgspec

from mitosis_sdk.client.http11 import lean_transport_for
from mitosis_sdk.errors import ConnectionFailed, error_from_body

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:5000"
USER_AGENT = "mitosis-sdk"
_KNOWN_URLS = 256  # API paths whose parsed URL is kept (the fetch's, the submit's, ...)


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
        # None where a proxy applies: then calls go through the client, which routes them.
        self._transport = transport or lean_transport_for(self.base_url)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            transport=self._transport,
            timeout=timeout,
            headers={"User-Agent": USER_AGENT},
        )
        self._timeout = httpx.Timeout(timeout)
        self._urls: dict[str, httpx.URL] = {}

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

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
        timeout = self._timeout if http_timeout is None else httpx.Timeout(http_timeout)
        request = httpx.Request(
            method,
            self._url(path, _clean(params)),
            headers=headers,
            content=content,
            extensions={"timeout": timeout.as_dict()},
        )
        try:
            response = await self._round_trip(request)
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

    async def _round_trip(self, request: httpx.Request) -> httpx.Response:
        """The answer, read to its end: from the transport, or through the client when a
        proxy applies."""
        if self._transport is None:
            return await self._http.send(request)
        response = await self._transport.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    def _url(self, path: str, params: dict[str, Any] | None) -> httpx.URL:
        """``path`` under the base URL, parsed once per path (and again with parameters)."""
        if params:
            return httpx.URL(self.base_url + path, params=params)
        url = self._urls.get(path)
        if url is None:
            if len(self._urls) >= _KNOWN_URLS:
                self._urls.clear()
            url = self._urls[path] = httpx.URL(self.base_url + path)
        return url


def _clean(params: dict[str, Any] | None) -> dict[str, Any] | None:
    """Drop unset query parameters; lists become repeated parameters."""
    if not params:
        return None
    return {k: v for k, v in params.items() if v is not None and v != []}
