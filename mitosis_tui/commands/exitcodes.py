"""Exit codes of ``mitosis-tui --batch``: a documented API that scripts depend on.

0  success
1  the command failed (a waited task did not complete, or the coordinator failed)
2  usage: unknown command, bad option or value (also a 400 from the coordinator)
3  authentication: not logged in, wrong password, session ended, account locked
4  not found or forbidden
5  conflict: name taken, last admin, stale state, quota exceeded
6  cannot reach the coordinator
"""

from __future__ import annotations

from mitosis_sdk import errors
from mitosis_sdk.errors import ErrorCode

OK = 0
FAILED = 1
USAGE = 2
AUTH = 3
NOT_FOUND = 4
CONFLICT = 5
UNREACHABLE = 6


def exit_code_for(exc: errors.MitosisError) -> int:
    if isinstance(exc, errors.ConnectionFailed):
        return UNREACHABLE
    if isinstance(exc, errors.Unauthorized | errors.RateLimited):
        return AUTH
    if isinstance(exc, errors.Forbidden):
        if exc.code in (ErrorCode.ACCOUNT_LOCKED, ErrorCode.ACCOUNT_DELETED):
            return AUTH
        return NOT_FOUND
    if isinstance(exc, errors.NotFound):
        return NOT_FOUND
    if isinstance(exc, errors.Conflict | errors.QuotaExceeded):
        return CONFLICT
    if isinstance(exc, errors.BadRequest | errors.PayloadTooLarge):
        return USAGE
    return FAILED
