"""One handler renders every failure as the SDK's error body; nothing a client sends is a 500."""

from __future__ import annotations

import logging
import re
import uuid

import msgspec
from litestar import Litestar, Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotAuthorizedException,
    NotFoundException,
    ValidationException,
)
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from sqlalchemy.exc import IntegrityError

from mitosis_sdk.errors import STATUS_OF_CODE, ErrorBody, ErrorCode
from mitosis_sdk.schemas import NAME_PATTERN
from mitosis_sdk.schemas.limits import COMPARISON_PATTERN, TAG_PATTERN
from mitosis_server.errors import DomainError
from mitosis_server.storage.base import StorageError, UploadIncomplete

log = logging.getLogger(__name__)

_CODE_OF_STATUS = {
    400: ErrorCode.INVALID_INPUT,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.INVALID_INPUT,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.TOO_LARGE,
    415: ErrorCode.INVALID_INPUT,
    429: ErrorCode.RATE_LIMITED,
}


def _render(code: ErrorCode, message: str, details=None, status: int | None = None) -> Response:
    body = ErrorBody(error=code, message=message, details=details)
    return Response(
        content=msgspec.json.encode(body),
        status_code=status or STATUS_OF_CODE[code],
        media_type="application/json",
    )


def domain_error(_: Request, exc: DomainError) -> Response:
    headers = {}
    response = _render(exc.code, exc.message, exc.details)
    if exc.code == ErrorCode.RATE_LIMITED and exc.details:
        headers["Retry-After"] = str(exc.details.get("retry_after", 1))
        response.headers.update(headers)
    return response


_RULES = {
    NAME_PATTERN: "must be 1-64 letters, digits, '_' or '-'",
    TAG_PATTERN: "tags and labels are 1-128 characters without spaces or commas",
    COMPARISON_PATTERN: "expected a comparison: =N, !=N, >N, >=N, <N or <=N",
}


def _friendly(text: str) -> str:
    """msgspec names the regex; people want the rule."""
    for pattern, rule in _RULES.items():
        if pattern in text or repr(pattern)[1:-1] in text:  # msgspec may escape backslashes
            return rule
    return text


def _describe_validation(exc: ValidationException) -> tuple[str, dict | None]:
    problems = exc.extra if isinstance(exc.extra, list) else []
    parts = []
    for problem in problems:
        if isinstance(problem, dict):
            key = problem.get("key")
            text = _friendly(problem.get("message", ""))
            parts.append(f"{key}: {text}" if key else text)
    detail = "; ".join(p for p in parts if p) or exc.detail
    return f"invalid request: {detail}", ({"problems": problems} if problems else None)


def _uuid_routes(app: Litestar) -> list[tuple[re.Pattern[str], list[str]]]:
    """Each route with a ``{name:uuid}`` parameter as a pattern that takes any segment there.

    The router matches ``{task_id:uuid}`` only with a UUID, so ``/api/tasks/abc`` is "not
    found" to it; these patterns tell that apart from a path that names nothing at all.
    Built per call: only requests the router could not place pay for it.
    """
    routes = []
    for route in app.routes:
        names = [n for n, p in route.path_parameters.items() if p.type is uuid.UUID]
        if names:
            pattern = re.sub(r"\{(\w+):[^}]+\}", r"(?P<\1>[^/]+)", route.path)
            routes.append((re.compile(f"{pattern}/?"), names))
    return routes


def _unrouted(request: Request) -> Response:
    """A 404 from the router: a malformed UUID in a known path is the caller's typo (400)."""
    path = request.url.path
    for pattern, names in _uuid_routes(request.app):
        match = pattern.fullmatch(path)
        if match is None:
            continue
        for name in names:
            value = match.group(name)
            try:
                uuid.UUID(value)
            except ValueError:
                return _render(ErrorCode.INVALID_INPUT, f"{name}: {value!r} is not a UUID")
    return _render(ErrorCode.NOT_FOUND, f"no such endpoint: {path} (the API is listed at /schema)")


def http_error(request: Request, exc: HTTPException) -> Response:
    if type(exc) is NotFoundException:  # only the router raises Litestar's own 404
        return _unrouted(request)
    if isinstance(exc, MethodNotAllowedException):
        return _render(
            ErrorCode.INVALID_INPUT,
            f"{request.method} is not allowed on {request.url.path}",
            status=405,
        )
    if isinstance(exc, ValidationException):
        message, details = _describe_validation(exc)
        return _render(ErrorCode.INVALID_INPUT, message, details, 400)
    if isinstance(exc, NotAuthorizedException):
        return _render(ErrorCode.UNAUTHORIZED, exc.detail or "log in first", status=401)
    status = exc.status_code
    code = _CODE_OF_STATUS.get(
        status, ErrorCode.INTERNAL if status >= 500 else ErrorCode.INVALID_INPUT
    )
    return _render(code, str(exc.detail), status=status)


def integrity_error(_: Request, exc: IntegrityError) -> Response:
    # Two requests raced for the same unique name; the loser gets what a sequential one would.
    log.info("integrity.conflict", extra={"error": str(exc.orig)})
    return _render(ErrorCode.CONFLICT, "that conflicts with a concurrent change; try again")


def storage_error(request: Request, exc: StorageError) -> Response:
    log.warning("storage.failed path=%s error=%s", request.url.path, exc)
    return _render(ErrorCode.UNAVAILABLE, f"the object store failed: {exc}; try again later")


def upload_incomplete(_: Request, exc: UploadIncomplete) -> Response:
    return _render(ErrorCode.INVALID_INPUT, f"the upload cannot be completed: {exc}")


def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("request.failed path=%s", request.url.path)
    return _render(
        ErrorCode.INTERNAL,
        "the coordinator failed to handle this request; the error is in its log",
        status=HTTP_500_INTERNAL_SERVER_ERROR,
    )


EXCEPTION_HANDLERS = {
    DomainError: domain_error,
    HTTPException: http_error,
    IntegrityError: integrity_error,
    StorageError: storage_error,
    UploadIncomplete: upload_incomplete,
    Exception: unexpected_error,
}
