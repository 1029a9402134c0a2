"""The wire schemas: msgspec Structs the coordinator validates and every client sends.

They live here once; server, worker and TUI import them from this package.
"""

from mitosis_sdk.schemas.accounts import (
    GroupMembership,
    LoginRequest,
    LogoutRequest,
    PasswordChange,
    PasswordReset,
    QuotaEdit,
    TokenReply,
    UserCreate,
    UserInfo,
    UserStateChange,
    WhoAmI,
)
from mitosis_sdk.schemas.common import NAME_PATTERN, Name, Password, Role, Struct, UserState
from mitosis_sdk.schemas.groups import GroupCreate, GroupInfo, Member, MembersRemove, MembersUpdate
from mitosis_sdk.schemas.ops import Health

__all__ = [
    "NAME_PATTERN",
    "GroupCreate",
    "GroupInfo",
    "GroupMembership",
    "Health",
    "LoginRequest",
    "LogoutRequest",
    "Member",
    "MembersRemove",
    "MembersUpdate",
    "Name",
    "Password",
    "PasswordChange",
    "PasswordReset",
    "QuotaEdit",
    "Role",
    "Struct",
    "TokenReply",
    "UserCreate",
    "UserInfo",
    "UserState",
    "UserStateChange",
    "WhoAmI",
]
