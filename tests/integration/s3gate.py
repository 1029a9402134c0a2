"""A real S3 endpoint for tests: moto's server, behind a gate that checks presigned URLs.

Moto accepts any presigned URL, whatever its signature or age; AWS, MinIO and Ceph check
both. So the server's WSGI app is wrapped in :class:`SigV4Gate`, which does what they do for
query-signed requests (recompute the SigV4 signature from the request as received, refuse an
expired one) and nothing else. The gate's clock can be moved forward, like the local store's,
so expiry tests do not sleep. The session fixtures are in ``tests/integration/conftest.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote

from moto.server import ThreadedMotoServer

ACCESS_KEY, SECRET_KEY, REGION = "mitosis-test", "mitosis-test-secret", "us-east-1"


class Clock:
    """A clock the test moves forward instead of sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return datetime.now(UTC).timestamp() + self.offset


class SigV4Gate:
    """WSGI middleware verifying query-signed (presigned) requests as S3 does; see the top."""

    def __init__(self, app, secret_key: str, clock: Clock) -> None:
        self.app = app
        self.secret_key = secret_key
        self.clock = clock

    def __call__(self, environ, start_response):
        query = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        params = dict(query)
        if "X-Amz-Signature" in params:
            refusal = self._refusal(environ, query, params)
            if refusal:
                body = f"<Error><Code>AccessDenied</Code><Message>{refusal}</Message></Error>"
                start_response("403 Forbidden", [("Content-Type", "application/xml")])
                return [body.encode()]
        return self.app(environ, start_response)

    def _header(self, environ, name: str) -> str:
        if name in ("content-length", "content-type"):
            return environ.get(name.upper().replace("-", "_"), "")
        return environ.get("HTTP_" + name.upper().replace("-", "_"), "")

    def _refusal(self, environ, query, params) -> str:
        signed_at = datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if self.clock() > signed_at.timestamp() + int(params["X-Amz-Expires"]):
            return "Request has expired"
        signed = params["X-Amz-SignedHeaders"].split(";")
        headers = "".join(f"{n}:{' '.join(self._header(environ, n).split())}\n" for n in signed)
        pairs = sorted(
            (quote(k, safe="-_.~"), quote(v, safe="-_.~"))
            for k, v in query
            if k != "X-Amz-Signature"
        )
        path = (environ.get("RAW_URI") or environ["REQUEST_URI"]).partition("?")[0]
        request = "\n".join(
            [
                environ["REQUEST_METHOD"],
                path,
                "&".join(f"{k}={v}" for k, v in pairs),
                headers,
                ";".join(signed),
                "UNSIGNED-PAYLOAD",
            ]
        )
        scope = params["X-Amz-Credential"].split("/", 1)[1]
        digest = hashlib.sha256(request.encode()).hexdigest()
        to_sign = f"AWS4-HMAC-SHA256\n{params['X-Amz-Date']}\n{scope}\n{digest}"
        key = f"AWS4{self.secret_key}".encode()
        for part in scope.split("/"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, params["X-Amz-Signature"]):
            return "The request signature we calculated does not match the signature you provided"
        return ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto(clock: Clock) -> tuple[ThreadedMotoServer, str]:
    """A gated moto server on a free loopback port, and its URL."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # The werkzeug server reads ``app`` per request; moto offers no hook to wrap it.
    server._server.app = SigV4Gate(server._server.app, SECRET_KEY, clock)
    return server, f"http://127.0.0.1:{port}"
