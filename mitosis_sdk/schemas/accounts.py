"""Login, sessions, the caller's identity and admin user management (FEATURES A1-A7)."""

from __future__ import annotations

from datetime import datetime

from mitosis_sdk.schemas.common import Name, Password, Role, Struct, UserState


class LoginRequest(Struct):
    username: Name
    password: Password


class TokenReply(Struct):
    """A fresh access token; send it as ``Authorization: Bearer <token>``."""

    token: str
    username: str
    expires_at: datetime


class LogoutRequest(Struct):
    all: bool = False


class GroupMembership(Struct):
    group: str
    role: Role


class WhoAmI(Struct):
    username: str
    is_admin: bool
    state: UserState
    groups: list[GroupMembership]
    token_expires_at: datetime


class PasswordChange(Struct):
    old_password: Password
    new_password: Password


class UserCreate(Struct):
    username: Name
    password: Password
    admin: bool = False


class UserInfo(Struct):
    username: str
    is_admin: bool
    state: UserState
    group_quota: int
    groups_created: int
    created_at: datetime


class PasswordReset(Struct):
    new_password: Password


class UserStateChange(Struct):
    state: UserState


class QuotaEdit(Struct):
    """``+N`` adds, ``-N`` subtracts, ``=N`` or ``N`` sets; sizes for storage (``+2GB``)."""

    change: str
