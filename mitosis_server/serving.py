"""The HTTP server ``mitosis-server serve`` runs: uvicorn, with the coordinator's shutdown order.

uvicorn finishes open requests before it runs the app's shutdown, and a worker's fetch may be
parked for up to 30 s: without help every stop or restart would wait that long. So parked
fetches are answered (with nothing) as soon as the shutdown begins.
"""

from __future__ import annotations

import socket

import uvicorn


class CoordinatorServer(uvicorn.Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        coordinator = getattr(self.config.app.state, "coordinator", None)
        if coordinator is not None:
            coordinator.wakeups.release()
        await super().shutdown(sockets)
