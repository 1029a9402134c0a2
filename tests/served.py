"""The app in-process, served the way uvicorn serves it.

``httpx.ASGITransport`` runs the app inside the caller's task, so a client that gives up on
a request (a worker abandoning its parked fetch when it stops) cancels the handler midway,
which no real server does: uvicorn lets the handler run on and tells it, through
``receive()``, that its client has gone. This transport does the same: each request runs in
a task of its own that the caller's cancellation does not reach, and a streaming handler
hears ``http.disconnect`` once the caller has left. Bodies are collected whole, as
``httpx.ASGITransport`` does.
"""

from __future__ import annotations

import asyncio

import httpx


class ServedTransport(httpx.AsyncBaseTransport):
    def __init__(self, app) -> None:
        self.app = app
        self._handling: set[asyncio.Task] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        exchange = _Exchange(request)
        handling = asyncio.create_task(self.app(exchange.scope(), exchange.receive, exchange.send))
        self._handling.add(handling)
        handling.add_done_callback(self._handling.discard)
        try:
            await asyncio.shield(handling)
        except asyncio.CancelledError:
            exchange.gone.set()
            raise
        body = httpx.ByteStream(b"".join(exchange.body))  # unread, as off a socket
        return httpx.Response(exchange.status, headers=exchange.headers, stream=body)

    async def finish(self, timeout: float = 30.0) -> None:
        """Wait for requests whose clients left (a parked fetch runs out its wait)."""
        if self._handling:
            await asyncio.wait(set(self._handling), timeout=timeout)


class _Exchange:
    """One request and the response the app sends for it."""

    def __init__(self, request: httpx.Request) -> None:
        self.request = request
        self._chunks = request.stream.__aiter__()
        self._sent_all = False
        self.gone = asyncio.Event()  # the client left, or the response is complete
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []

    def scope(self) -> dict:
        url = self.request.url
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": self.request.method,
            "headers": [(k.lower(), v) for k, v in self.request.headers.raw],
            "scheme": url.scheme,
            "path": url.path,
            "raw_path": url.raw_path.split(b"?")[0],
            "query_string": url.query,
            "server": (url.host, url.port),
            "client": ("127.0.0.1", 123),
            "root_path": "",
        }

    async def receive(self) -> dict:
        if self._sent_all:
            await self.gone.wait()
            return {"type": "http.disconnect"}
        try:
            body = await self._chunks.__anext__()
        except StopAsyncIteration:
            self._sent_all = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": body, "more_body": True}

    async def send(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            if message.get("body") and self.request.method != "HEAD":
                self.body.append(message["body"])
            if not message.get("more_body", False):
                self.gone.set()
