"""A lean HTTP/1.1 transport for httpx: keep-alive connections on asyncio protocols, answers
parsed by llhttp (httptools, the C parser uvicorn uses).

Why not httpx's own transport: httpcore over anyio, with h11 parsing in Python, spends about
a millisecond of CPU per request on a small machine (measured: 1.4 ms per request through
httpx, 0.27 ms of it httpx itself) — as much as the coordinator spends answering a worker's
fetch, which made every busy worker and script pay twice. This one keeps httpx's API (the
client, its timeouts, cookies, decoding, errors) and replaces only the wire.

What it does: one request at a time per connection; idle connections kept for
``keepalive_expiry`` seconds (shorter than the coordinator's 75 s, so the server never closes
one as we reuse it) and dropped as soon as the server closes them; TLS through httpx's own
context; request bodies by length or chunked; responses by length, chunked or until close,
streamed with back-pressure (a large download never sits in memory). A request is never
retried: what the caller sees is what happened. Proxies are httpx's business: the client
only mounts this transport when no proxy applies (see :func:`lean_transport_for`).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator

import httptools
import httpx

KEEPALIVE_EXPIRY = 5.0  # seconds an idle connection is kept
MAX_IDLE_PER_ORIGIN = 16
_HIGH_WATER = 256 * 1024  # buffered response bytes before we stop reading the socket
_LOW_WATER = 64 * 1024

Origin = tuple[bytes, bytes, int]


def lean_transport_for(url: str) -> httpx.AsyncBaseTransport | None:
    """A :class:`KeepAliveTransport` for ``url``, or None where httpx's own transport must
    go (a proxy from the environment applies, or the scheme is not HTTP)."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https"):
        return None
    proxies = urllib.request.getproxies()
    if (parsed.scheme in proxies or "all" in proxies) and not urllib.request.proxy_bypass(
        parsed.host
    ):
        return None
    return KeepAliveTransport()


class KeepAliveTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        keepalive_expiry: float = KEEPALIVE_EXPIRY,
    ) -> None:
        self._verify = verify
        self._ssl: ssl.SSLContext | None = None
        self._keepalive_expiry = keepalive_expiry
        self._idle: dict[Origin, collections.deque[_Connection]] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("the transport is closed")
        timeouts = request.extensions.get("timeout", {})
        url = request.url
        origin = (url.raw_scheme, url.raw_host, url.port or _DEFAULT_PORTS[url.raw_scheme])
        connection = self._idle_connection(origin) or await self._connect(
            origin, timeouts.get("connect"), request
        )
        try:
            await connection.send(request, timeouts.get("write"))
            return await connection.receive(request, timeouts.get("read"), self._release)
        except BaseException:  # cancelled or failed half-way: the connection is unusable
            connection.close()
            raise

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()

    def _idle_connection(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()  # the most recently used: the likeliest to be alive
            if connection.reusable(now - self._keepalive_expiry):
                return connection
            connection.close()
        return None

    def _release(self, origin: Origin, connection: _Connection) -> None:
        """A response was read to its end on a connection the server keeps open."""
        idle = self._idle.setdefault(origin, collections.deque())
        if self._closed or len(idle) >= MAX_IDLE_PER_ORIGIN:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        idle.append(connection)

    async def _connect(
        self, origin: Origin, seconds: float | None, request: httpx.Request
    ) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls = None
        if scheme == b"https":
            if self._ssl is None:
                self._ssl = (
                    self._verify
                    if isinstance(self._verify, ssl.SSLContext)
                    else httpx.create_ssl_context(verify=self._verify)
                )
            tls = self._ssl
        name = host.decode("ascii")
        try:
            async with asyncio.timeout(seconds):
                _, connection = await loop.create_connection(
                    lambda: _Connection(origin), name, port, ssl=tls
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"no connection within {seconds}s", request=request) from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
        return connection


_DEFAULT_PORTS = {b"http": 80, b"https": 443}


class _Connection(asyncio.Protocol):
    """One socket: a request written, then its response parsed as it arrives.

    The parser's callbacks fill ``_status``/``_headers`` and the body queue; the awaiting
    side waits on one future at a time (``_wakeup``), set whenever something arrived.
    """

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.idle_since = time.monotonic()
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._lost = False
        self._failure: Exception | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self._wakeup: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self._headers: list[tuple[bytes, bytes]] = []
        self._reason = b""
        self._status: int | None = None
        self._body: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._complete = False
        self._keep_alive = False  # llhttp knows only while the answer is being parsed
        self._until_close = False
        self._reading_paused = False

    # ---- the caller's side ----------------------------------------------------------------

    def reusable(self, fresh_after: float) -> bool:
        """Still open (the server has not closed it) and idle for less than the expiry."""
        closing = self._transport is None or self._transport.is_closing()
        return not (self._lost or closing) and self.idle_since > fresh_after

    def close(self) -> None:
        if self._transport is not None and not self._lost:
            self._transport.close()
        self._lost = True

    async def send(self, request: httpx.Request, seconds: float | None) -> None:
        self._reset()
        url = request.url
        lines = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), url.raw_path)]
        chunked = False
        for name, value in request.headers.raw:
            if name.lower() == b"transfer-encoding" and value.lower() == b"chunked":
                chunked = True
            lines.append(name + b": " + value)
        head = b"\r\n".join(lines) + b"\r\n\r\n"
        transport = self._transport
        assert transport is not None
        try:
            async with asyncio.timeout(seconds):
                if isinstance(request.stream, httpx.ByteStream):  # the common case: one write
                    body = request.content
                    transport.write(head + (_chunk(body) + _LAST_CHUNK if chunked else body))
                else:
                    transport.write(head)
                    async for data in request.stream:  # type: ignore[union-attr]
                        if data:
                            transport.write(_chunk(data) if chunked else data)
                            await self._drain(request)
                    if chunked:
                        transport.write(_LAST_CHUNK)
                await self._drain(request)
        except TimeoutError as exc:
            raise httpx.WriteTimeout(
                f"request not sent within {seconds}s", request=request
            ) from exc

    async def receive(
        self, request: httpx.Request, seconds: float | None, release
    ) -> httpx.Response:
        while self._status is None:
            await self._wait(request, seconds)
        if request.method == "HEAD":
            self._complete = True
            self._parser = None  # the parser would read the next answer as this one's body
        return httpx.Response(
            self._status,
            headers=self._headers,
            stream=_ResponseBody(self, request, seconds, release),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": self._reason},
        )

    async def body_chunks(
        self, request: httpx.Request, seconds: float | None
    ) -> AsyncIterator[bytes]:
        while True:
            while self._body:
                chunk = self._body.popleft()
                self._buffered -= len(chunk)
                if self._reading_paused and self._buffered <= _LOW_WATER and not self._lost:
                    self._reading_paused = False
                    self._transport.resume_reading()
                yield chunk
            if self._complete:
                return
            await self._wait(request, seconds)

    def finished_cleanly(self) -> bool:
        """The whole response was read and the server keeps the connection open."""
        return self._complete and self._keep_alive and not self._lost

    async def _wait(self, request: httpx.Request, seconds: float | None) -> None:
        if self._failure is not None:
            raise self._failure
        if self._lost:
            raise httpx.RemoteProtocolError("the server closed the connection", request=request)
        self._wakeup = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(seconds):
                await self._wakeup
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"no answer within {seconds}s", request=request) from exc
        finally:
            self._wakeup = None
        if self._failure is not None:
            raise self._failure
        if self._lost and self._status is None and not self._body and not self._complete:
            raise httpx.RemoteProtocolError("the server closed the connection", request=request)

    async def _drain(self, request: httpx.Request) -> None:
        if not self._writable.is_set():
            await self._writable.wait()
        if self._lost:
            raise httpx.WriteError("the connection closed while sending", request=request)

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    # ---- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._parser is None:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._failure = httpx.RemoteProtocolError(f"malformed answer: {exc}")
            self.close()
        self._wake()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._until_close and self._status is not None:
            self._complete = True  # the body was "until the server closes"
        elif exc is not None and self._failure is None:
            self._failure = httpx.ReadError(str(exc) or type(exc).__name__)
        self._writable.set()
        self._wake()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # ---- httptools callbacks ---------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            self._headers, self._reason = [], b""
            return
        self._status = status
        framed = {n.lower() for n, _ in self._headers} & {b"content-length", b"transfer-encoding"}
        self._until_close = not framed and self._status not in (204, 304)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._reading_paused and not self._lost:
            self._reading_paused = True
            self._transport.pause_reading()

    def on_message_complete(self) -> None:
        if self._status is not None:
            self._keep_alive = self._parser.should_keep_alive()
            self._complete = True


_LAST_CHUNK = b"0\r\n\r\n"


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class _ResponseBody(httpx.AsyncByteStream):
    """The response's body as it arrives; closing it returns the connection to the pool
    when the whole answer was read, and closes the connection otherwise."""

    def __init__(self, connection: _Connection, request, seconds, release) -> None:
        self._connection = connection
        self._request = request
        self._seconds = seconds
        self._release = release
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._connection.body_chunks(self._request, self._seconds):
            yield chunk

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        connection = self._connection
        if connection.finished_cleanly():
            self._release(connection.origin, connection)
        else:
            connection.close()
