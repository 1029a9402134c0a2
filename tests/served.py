"""The app in-process, served the way uvicorn serves it.

``httpx.ASGITransport`` runs the app inside the caller's task, so a client that gives up on
a request (a worker abandoning its parked fetch when it stops) cancels the handler midway,
something no real server does: uvicorn lets a handler finish after its client has gone.
Here each request runs in a task of its own that the caller's cancellation does not reach.
"""

from __future__ import annotations

import asyncio

import httpx


class ServedTransport(httpx.AsyncBaseTransport):
    def __init__(self, app) -> None:
        self._inner = httpx.ASGITransport(app=app)
        self._handling: set[asyncio.Task] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        handling = asyncio.create_task(self._inner.handle_async_request(request))
        self._handling.add(handling)
        handling.add_done_callback(self._handling.discard)
        return await asyncio.shield(handling)

    async def finish(self, timeout: float = 60.0) -> None:
        """Wait for requests whose clients left (a parked fetch runs out its wait)."""
        if self._handling:
            await asyncio.wait(set(self._handling), timeout=timeout)
