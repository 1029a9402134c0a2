"""A lean load generator: keep-alive HTTP/1.1 connections sending one prepared request
again and again, the way ``wrk`` or ``oha`` measure a server.

The SDK's client (httpx) spends about 1.4 ms of CPU per request on this machine — as much as
the coordinator spends answering a submit — so four SDK clients sharing the coordinator's
two cores measure mostly themselves. These connections spend a few tens of microseconds per
request, which leaves the cores to the coordinator and the database, and so show what the
coordinator can serve. Every answer's status is checked; nothing else is parsed.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit


class UnexpectedAnswer(RuntimeError):
    pass


def prepared_request(method: str, path: str, token: str, body: bytes) -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _answer(reader: asyncio.StreamReader) -> int:
    """Read one response; its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def hammer(
    urls: list[str], request: bytes, *, connections: int, seconds: float, expect: int
) -> tuple[int, float]:
    """Send ``request`` over ``connections`` connections (spread over ``urls``, one
    coordinator each), each waiting for its answer before the next, for ``seconds``; the
    requests answered and the wall time taken."""
    deadline = time.perf_counter() + seconds
    answered = 0

    async def one_connection(url: str) -> None:
        nonlocal answered
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            while time.perf_counter() < deadline:
                writer.write(request)
                status = await _answer(reader)
                if status != expect:
                    raise UnexpectedAnswer(f"answered {status}, expected {expect}")
                answered += 1
        finally:
            writer.close()
            await writer.wait_closed()

    started = time.perf_counter()
    await asyncio.gather(*(one_connection(urls[i % len(urls)]) for i in range(connections)))
    return answered, time.perf_counter() - started
