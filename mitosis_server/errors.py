"""Domain errors: what services raise, carrying the wire error code and a user-facing message.

Services never build HTTP responses; one handler in ``api/errors.py`` renders these.
"""

from __future__ import annotations

from typing import Any

from mitosis_sdk.errors import STATUS_OF_CODE, ErrorCode


class DomainError(Exception):
    def __init__(self, code: ErrorCode, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    @property
    def status(self) -> int:
        return STATUS_OF_CODE[self.code]


def invalid(field: str, message: str) -> DomainError:
    return DomainError(ErrorCode.INVALID_INPUT, f"{field}: {message}", {"field": field})


def not_found(what: str) -> DomainError:
    return DomainError(ErrorCode.NOT_FOUND, f"{what} does not exist")


def forbidden(message: str) -> DomainError:
    return DomainError(ErrorCode.FORBIDDEN, message)


def conflict(message: str) -> DomainError:
    return DomainError(ErrorCode.CONFLICT, message)
