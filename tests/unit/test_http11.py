"""The lean HTTP/1.1 transport against a scripted server on loopback: every way an answer
can be framed, kept alive or cut off, and what the caller sees for each.

(The coordinator's own answers go through it in every test that starts ``mitosis-server``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable

import httpx
import msgspec
import pytest

from mitosis_sdk.client.base import BaseClient
from mitosis_sdk.client.http11 import KeepAliveTransport, lean_transport_for

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """The request line, its headers and its body (by length or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    line, *rest = head[:-4].split(b"\r\n")
    headers = {k.lower(): v for k, _, v in (h.partition(b": ") for h in rest)}
    if b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding") == b"chunked":
        body = b""
        while size := int((await reader.readuntil(b"\r\n"))[:-2], 16):
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        await reader.readexactly(2)
    else:
        body = b""
    return line, headers, body


def answer(body: bytes, *extra: bytes, status: bytes = b"200 OK") -> bytes:
    headers = b"".join(h + b"\r\n" for h in extra)
    return b"HTTP/1.1 %s\r\ncontent-length: %d\r\n%s\r\n%s" % (status, len(body), headers, body)


@contextlib.asynccontextmanager
async def serving(script: Script):
    """A loopback server running ``script`` per connection; yields (url, connections)."""
    connections: list[asyncio.StreamWriter] = []

    async def handle(reader, writer):
        connections.append(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await script(reader, writer)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", connections
    finally:
        server.close()
        for writer in connections:
            writer.close()


def answer_once(raw: bytes, linger: float = 0.0) -> Script:
    """Read one request, send ``raw``, keep the connection ``linger`` seconds, close it."""

    async def script(reader, writer):
        await read_request(reader)
        writer.write(raw)
        await writer.drain()
        await asyncio.sleep(linger)

    return script


async def echo_forever(reader, writer):
    """Answer each request with its line and body, keeping the connection."""
    while True:
        line, _, body = await read_request(reader)
        writer.write(answer(line + b"|" + body))
        await writer.drain()


def client(url: str, **kwargs) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, transport=KeepAliveTransport(**kwargs))


async def test_requests_share_one_kept_alive_connection():
    async with serving(echo_forever) as (url, connections), client(url) as http:
        for n in range(5):
            response = await http.post(f"/things/{n}?x=1", content=b"body %d" % n)
            assert response.status_code == 200
            assert response.content == b"POST /things/%d?x=1 HTTP/1.1|body %d" % (n, n)
        assert len(connections) == 1


async def test_concurrent_requests_each_get_their_own_connection_and_answer():
    async with serving(echo_forever) as (url, connections), client(url) as http:
        replies = await asyncio.gather(*(http.get(f"/{n}") for n in range(6)))
        assert [r.content for r in replies] == [b"GET /%d HTTP/1.1|" % n for n in range(6)]
        assert len(connections) <= 6
        again = await asyncio.gather(*(http.get(f"/{n}") for n in range(6)))
        assert all(r.status_code == 200 for r in again)
        assert len(connections) <= 6  # the second round reused them


async def test_chunked_answer_and_chunked_request_body():
    async def script(reader, writer):
        _, headers, body = await read_request(reader)
        assert headers[b"transfer-encoding"] == b"chunked"
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for piece in (body[:3], body[3:]):
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await echo_forever(reader, writer)

    async def parts():
        yield b"hello "
        yield b"world"

    async with serving(script) as (url, connections), client(url) as http:
        response = await http.post("/up", content=parts())
        assert response.content == b"hello world"
        assert (await http.get("/next")).content == b"GET /next HTTP/1.1|"
        assert len(connections) == 1


async def test_answer_delimited_by_close_and_connection_close_are_not_reused():
    until_close = answer_once(b"HTTP/1.1 200 OK\r\n\r\nall of it")
    says_close = answer_once(answer(b"bye", b"connection: close"))

    for script, body in ((until_close, b"all of it"), (says_close, b"bye")):
        async with serving(script) as (url, connections), client(url) as http:
            assert (await http.get("/")).content == body
            assert (await http.get("/")).content == body
            assert len(connections) == 2


async def test_interim_continue_is_skipped():
    async def script(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b"real", status=b"201 Created"))
        await echo_forever(reader, writer)

    async with serving(script) as (url, _), client(url) as http:
        response = await http.get("/")
        assert (response.status_code, response.content) == (201, b"real")
        assert response.reason_phrase == "Created"


async def test_a_server_that_closes_an_idle_connection_costs_a_new_one_not_an_error():
    async def one_request(reader, writer):
        line, _, _ = await read_request(reader)
        writer.write(answer(line))
        await writer.drain()
        # closes without saying so: the client learns it from the socket

    async with serving(one_request) as (url, connections), client(url) as http:
        assert (await http.get("/a")).status_code == 200
        await asyncio.sleep(0.05)
        assert (await http.get("/b")).content == b"GET /b HTTP/1.1"
        assert len(connections) == 2


async def test_expired_idle_connections_are_not_reused():
    async with (
        serving(echo_forever) as (url, connections),
        client(url, keepalive_expiry=0.01) as http,
    ):
        await http.get("/a")
        await asyncio.sleep(0.05)
        await http.get("/b")
        assert len(connections) == 2


async def test_cut_off_answer_is_a_protocol_error_and_the_connection_is_dropped():
    calls = 0

    async def script(reader, writer):
        nonlocal calls
        calls += 1
        line, _, _ = await read_request(reader)
        if calls == 1:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this")
            await writer.drain()
            return
        writer.write(answer(line))
        await echo_forever(reader, writer)

    async with serving(script) as (url, connections), client(url) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get("/")
        assert (await http.get("/x")).status_code == 200
        assert len(connections) == 2


async def test_garbage_is_a_protocol_error():
    garbage = answer_once(b"NOT HTTP AT ALL\r\n\r\n", linger=1)
    async with serving(garbage) as (url, _), client(url) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get("/")


async def test_read_timeout_and_connect_error():
    async with serving(answer_once(b"", linger=5)) as (url, _), client(url) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get("/", timeout=httpx.Timeout(5.0, read=0.1))
    async with client(url) as http:  # that server is gone: nothing listens there now
        with pytest.raises(httpx.ConnectError):
            await http.get("/")


async def test_large_answer_streams_with_bounded_buffering():
    size = 8 * 1024 * 1024

    async def script(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
        block = b"x" * 65536
        for _ in range(size // len(block)):
            writer.write(block)
            await writer.drain()
        await echo_forever(reader, writer)

    transport = KeepAliveTransport()
    async with (
        serving(script) as (url, connections),
        httpx.AsyncClient(base_url=url, transport=transport) as http,
    ):
        received = 0
        peak = 0
        async with http.stream("GET", "/big") as response:
            async for chunk in response.aiter_raw():
                received += len(chunk)
                await asyncio.sleep(0)  # a slow reader
                for idle in transport._idle.values():
                    assert not idle
                connection = response.stream._stream._connection
                peak = max(peak, connection._buffered)
        assert received == size
        assert peak <= 2 * 1024 * 1024  # paused reading well before holding it all
        assert (await http.get("/after")).status_code == 200
        assert len(connections) == 1


async def test_a_stream_left_half_read_closes_its_connection():
    async def script(reader, writer):
        line, _, _ = await read_request(reader)
        if line.startswith(b"GET /again"):
            writer.write(answer(line))
            await echo_forever(reader, writer)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n" + b"y" * 1000)
        await writer.drain()
        await asyncio.sleep(5)

    async with serving(script) as (url, connections), client(url) as http:
        async with http.stream("GET", "/") as response:
            async for _ in response.aiter_raw():
                break
        assert (await http.get("/again", timeout=1.0)).status_code == 200
        assert len(connections) == 2


async def test_cancelled_request_drops_its_connection():
    async def script(reader, writer):
        line, _, _ = await read_request(reader)
        if line.startswith(b"GET /slow"):
            await asyncio.sleep(0.3)
        writer.write(answer(line))
        await writer.drain()
        await echo_forever(reader, writer)

    async with serving(script) as (url, connections), client(url) as http:
        slow = asyncio.ensure_future(http.get("/slow"))
        await asyncio.sleep(0.05)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        # the late answer to /slow must not be taken for the answer to /fast
        assert (await http.get("/fast")).content == b"GET /fast HTTP/1.1"
        assert len(connections) == 2


def test_proxies_from_the_environment_keep_httpx_transport(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    assert isinstance(lean_transport_for("http://127.0.0.1:5000"), KeepAliveTransport)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    assert lean_transport_for("http://coordinator.example:5000") is None
    monkeypatch.setenv("NO_PROXY", "coordinator.example")
    assert isinstance(lean_transport_for("http://coordinator.example:5000"), KeepAliveTransport)


async def test_sdk_calls_go_through_a_proxy_from_the_environment(monkeypatch):
    """SDK calls skip httpx's client for the transport, except where a proxy applies: then
    the client routes them, and the proxy sees the absolute URL and the SDK's headers."""
    seen: list[tuple[bytes, dict[bytes, bytes], bytes]] = []

    async def proxy(reader, writer):
        seen.append(await read_request(reader))
        writer.write(answer(b'{"status":"ok"}', b"content-type: application/json"))
        await writer.drain()

    async with serving(proxy) as (proxy_url, _):
        for name in ("http_proxy", "all_proxy", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
            monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        async with BaseClient("http://coordinator.example:5000", "t0ken") as sdk:
            reply = await sdk.request("POST", "/api/things", body={"n": 1}, result=dict)
    assert reply == {"status": "ok"}
    ((line, headers, body),) = seen
    assert line == b"POST http://coordinator.example:5000/api/things HTTP/1.1"
    assert headers[b"authorization"] == b"Bearer t0ken"
    assert headers[b"user-agent"] == b"mitosis-sdk"
    assert body == b'{"n":1}'


async def test_sdk_calls_keep_their_query_parameters_and_parsed_paths():
    async def request_line_as_json(reader, writer):
        while True:
            line, _, _ = await read_request(reader)
            writer.write(answer(msgspec.json.encode(line.decode())))
            await writer.drain()

    async with serving(request_line_as_json) as (url, _), BaseClient(url) as sdk:
        for _ in range(2):  # the second time from the parsed path kept
            assert await sdk.request("GET", "/a/b", result=str) == "GET /a/b HTTP/1.1"
            queried = await sdk.request("GET", "/a/b", params={"x": [1, 2], "y": None}, result=str)
            assert queried == "GET /a/b?x=1&x=2 HTTP/1.1"


def self_signed(directory) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


async def test_tls_is_verified_against_the_trusted_certificate(tmp_path):
    cert, key = self_signed(tmp_path)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    server = await asyncio.start_server(
        lambda r, w: echo_forever(r, w), "127.0.0.1", 0, ssl=server_side
    )
    port = server.sockets[0].getsockname()[1]
    url = f"https://127.0.0.1:{port}"
    try:
        trusting = ssl.create_default_context(cafile=cert)
        async with client(url, verify=trusting) as http:
            assert (await http.get("/secure")).content == b"GET /secure HTTP/1.1|"
            assert (await http.get("/again")).status_code == 200
        async with client(url) as http:  # the system's roots do not know this certificate
            with pytest.raises(httpx.ConnectError):
                await http.get("/")
    finally:
        server.close()
