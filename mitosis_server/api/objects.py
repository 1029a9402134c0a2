"""The local object store's signed URLs: ``PUT`` streams a body to disk, ``GET`` streams it back.

Only mounted when the coordinator stores objects in a local directory (with S3 the bytes never
reach us). The signature in the URL is the authorisation, so these paths bypass token
authentication. Bodies are never held in memory: a PUT goes chunk by chunk into a scratch file
and is refused the moment it passes the declared size (413) or when it ends short (400); a GET
is sent from the file in 4 MiB chunks. The key is read from the raw request path, because the
decoded path the router sees has already had ``//`` and ``.`` segments folded away.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, unquote

from litestar import Request, Response, Router, get, put
from litestar.di import NamedDependency, Provide
from litestar.response import File

from mitosis_sdk.errors import ErrorCode
from mitosis_server.errors import DomainError, invalid
from mitosis_server.storage.base import BucketKind, UploadIncomplete, check_key, content_disposition
from mitosis_server.storage.local import (
    ROUTE,
    Grant,
    InvalidGrant,
    LocalStore,
    PartBusy,
    SizeMismatch,
)

__all__ = ["create_router"]

_PATH = "/{bucket:str}/{key:path}"
DOWNLOAD_CHUNK = 4 * 2**20  # bytes per read of a GET (one thread hop each)


def _grant(request: Request, store: LocalStore) -> Grant:
    raw = request.scope.get("raw_path")
    path = raw.decode("ascii", "replace").partition("?")[0] if raw else request.scope["path"]
    bucket, _, key = path.partition(f"{ROUTE}/")[2].partition("/")
    if bucket not in {kind.value for kind in BucketKind}:
        raise DomainError(ErrorCode.NOT_FOUND, f"there is no bucket {bucket!r}")
    try:
        key = check_key(unquote(key, errors="strict") if raw else key)
    except (UnicodeDecodeError, ValueError) as exc:
        message = f"this URL's key is not valid: {exc}"
        raise DomainError(ErrorCode.INVALID_INPUT, message, {"field": "key"}) from None
    query = parse_qsl(request.scope.get("query_string", b"").decode("latin-1"), True)
    try:
        return store.verify(request.method, bucket, key, query)
    except InvalidGrant as exc:
        raise DomainError(ErrorCode.FORBIDDEN, str(exc)) from None


async def _body(request: Request) -> AsyncIterator[bytes]:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise invalid("body", "the client went away before the upload ended")
        if message.get("body"):
            yield message["body"]
        if not message.get("more_body", False):
            return


@put(_PATH, request_max_body_size=None, include_in_schema=False)
async def upload(request: Request, local_store: NamedDependency[LocalStore]) -> Response[None]:
    grant = _grant(request, local_store)
    declared = request.headers.get("content-length")
    if declared is not None and declared != str(grant.size):
        if not declared.isdigit() or int(declared) < (grant.size or 0):
            raise invalid("Content-Length", f"this URL accepts exactly {grant.size} bytes")
        raise DomainError(ErrorCode.TOO_LARGE, f"this URL accepts at most {grant.size} bytes")
    try:
        etag = await local_store.receive(grant, _body(request))
    except SizeMismatch as exc:
        code = ErrorCode.TOO_LARGE if exc.too_long else ErrorCode.INVALID_INPUT
        raise DomainError(code, str(exc)) from None
    except UploadIncomplete as exc:
        raise DomainError(ErrorCode.NOT_FOUND, str(exc)) from None
    except PartBusy as exc:  # a retry overtaking its first attempt: worth retrying (503)
        raise DomainError(ErrorCode.UNAVAILABLE, str(exc)) from None
    return Response(None, status_code=200, headers={"ETag": etag})


@get(_PATH, include_in_schema=False)
async def download(request: Request, local_store: NamedDependency[LocalStore]) -> File:
    grant = _grant(request, local_store)
    path = local_store.object_path(grant.bucket, grant.key)
    if not path.is_file():
        raise DomainError(ErrorCode.NOT_FOUND, f"{grant.key!r} does not exist")
    filename = grant.filename or grant.key.rpartition("/")[2]
    return File(
        path,
        chunk_size=DOWNLOAD_CHUNK,
        filename=filename,
        media_type="application/octet-stream",
        headers={"content-disposition": content_disposition(filename)},
    )


def create_router(store: LocalStore) -> Router:
    """The routes under ``/objects`` serving ``store``'s URLs; add ``^/objects/`` to the public
    paths, since the URL's signature stands in for a token."""
    return Router(
        path=ROUTE,
        route_handlers=[upload, download],
        dependencies={"local_store": Provide(lambda: store, sync_to_thread=False)},
    )
