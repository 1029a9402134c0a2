"""Field types and enums every resource shares: names, roles, states, timestamps."""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec

NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"

Name = Annotated[
    str,
    msgspec.Meta(
        pattern=NAME_PATTERN,
        description="1-64 letters, digits, '_' or '-' (users and groups share one namespace)",
    ),
]
Password = Annotated[
    str, msgspec.Meta(min_length=1, max_length=1024, description="1-1024 characters")
]


class Role(enum.StrEnum):
    """A user's role in a group, or a group's grant on a worker; ordered read < write < admin."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _ROLE_RANK[self]

    def allows(self, needed: Role) -> bool:
        """True when this role includes everything ``needed`` may do."""
        return self.rank >= needed.rank


_ROLE_RANK = {Role.READ: 1, Role.WRITE: 2, Role.ADMIN: 3}


class UserState(enum.StrEnum):
    ACTIVE = "active"
    LOCKED = "locked"
    DELETED = "deleted"


class Struct(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every request and reply: unknown fields are an error, not silently dropped."""
