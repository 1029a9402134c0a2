"""Groups and their members (FEATURES G1-G4)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from mitosis_sdk.schemas.common import Name, Role, Struct


class GroupCreate(Struct):
    name: Name


class Member(Struct):
    username: Name
    role: Role


class GroupInfo(Struct):
    """A group as its members see it; ``members`` is filled for group admins only."""

    name: str
    creator: str
    state: str
    personal: bool
    created_at: datetime
    task_count: int
    worker_count: int
    storage_used: int
    storage_quota: int
    my_role: Role | None = None
    members: list[Member] | None = None


class MembersUpdate(Struct):
    """Add members or change their roles, all or nothing."""

    members: Annotated[list[Member], msgspec.Meta(min_length=1, max_length=1000)]


class MembersRemove(Struct):
    usernames: Annotated[list[Name], msgspec.Meta(min_length=1, max_length=1000)]
