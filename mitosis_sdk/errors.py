"""One error shape on the wire, one exception per kind of failure in Python.

The coordinator answers every failure with ``{"error": code, "message": ..., "details"?}``.
The SDK turns that body back into a typed exception, so callers catch what they mean::

    MitosisError                 anything Mitosis raises
    ├── ApiError                 the coordinator answered with an error body
    │   ├── BadRequest           400 invalid_input: a field broke a rule (details say which)
    │   ├── Unauthorized         401 unauthorized: no, bad, expired or revoked token
    │   ├── Forbidden            403 forbidden / account_locked / account_deleted
    │   ├── NotFound             404 not_found
    │   ├── Conflict             409 conflict: name taken, stale attempt, last admin ...
    │   ├── PayloadTooLarge      413 too_large
    │   ├── QuotaExceeded        422 quota_exceeded
    │   ├── RateLimited          429 rate_limited
    │   └── ServerError          5xx internal / unavailable
    └── ConnectionFailed         the coordinator could not be reached at all
"""

from __future__ import annotations

import enum
import re
from typing import Any

import msgspec

__all__ = [
    "ApiError",
    "BadRequest",
    "Conflict",
    "ConnectionFailed",
    "ErrorBody",
    "ErrorCode",
    "Forbidden",
    "MitosisError",
    "NotFound",
    "PayloadTooLarge",
    "QuotaExceeded",
    "RateLimited",
    "ServerError",
    "Unauthorized",
    "error_from_body",
]


class ErrorCode(enum.StrEnum):
    """The ``error`` field of every error body; a stable API, like the exit codes."""

    INVALID_INPUT = "invalid_input"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    ACCOUNT_LOCKED = "account_locked"
    ACCOUNT_DELETED = "account_deleted"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    TOO_LARGE = "too_large"
    QUOTA_EXCEEDED = "quota_exceeded"
    RATE_LIMITED = "rate_limited"
    INTERNAL = "internal"
    UNAVAILABLE = "unavailable"


STATUS_OF_CODE: dict[ErrorCode, int] = {
    ErrorCode.INVALID_INPUT: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.ACCOUNT_LOCKED: 403,
    ErrorCode.ACCOUNT_DELETED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.QUOTA_EXCEEDED: 422,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNAVAILABLE: 503,
}


class ErrorBody(msgspec.Struct, omit_defaults=True):
    """The JSON body of every error response."""

    error: ErrorCode
    message: str
    details: dict[str, Any] | None = None


class MitosisError(Exception):
    """Base of everything the SDK raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConnectionFailed(MitosisError):
    """The coordinator did not answer (refused, DNS, TLS, timeout)."""


class ApiError(MitosisError):
    """The coordinator answered with an error body."""

    status = 500

    def __init__(
        self,
        message: str,
        code: ErrorCode = ErrorCode.INTERNAL,
        details: dict[str, Any] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.details = details
        if status is not None:
            self.status = status


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class PayloadTooLarge(ApiError):
    status = 413


class QuotaExceeded(ApiError):
    status = 422


class RateLimited(ApiError):
    status = 429


class ServerError(ApiError):
    status = 500


_CLASS_OF_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: QuotaExceeded,
    429: RateLimited,
}


def _foreign_answer(status: int, body: bytes) -> str:
    """One line for an answer that is not Mitosis's error shape: a proxy, or a wrong URL."""
    text = body.decode("utf-8", "replace")
    title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
    if title is not None:
        text = title.group(1)
    elif text.lstrip().startswith("<"):
        text = "an HTML page"
    summary = " ".join(text.split())[:120]
    return (
        f"the server answered HTTP {status} ({summary or 'no body'}), not as a Mitosis "
        "coordinator would: is the URL right?"
    )


def error_from_body(status: int, body: bytes) -> ApiError:
    """The typed exception for an error response, tolerant of non-Mitosis bodies (proxies)."""
    cls = _CLASS_OF_STATUS.get(status, ServerError if status >= 500 else ApiError)
    try:
        parsed = msgspec.json.decode(body, type=ErrorBody)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return cls(_foreign_answer(status, body), status=status)
    return cls(parsed.message, code=parsed.error, details=parsed.details, status=status)
