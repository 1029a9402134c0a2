"""Login, sessions and the caller's own account."""

from __future__ import annotations

from mitosis_sdk.client.base import BaseClient
from mitosis_sdk.schemas import (
    GroupMembership,
    Health,
    LoginRequest,
    LogoutRequest,
    PasswordChange,
    TokenReply,
    WhoAmI,
)


class AccountsAPI(BaseClient):
    async def login(self, username: str, password: str) -> TokenReply:
        """Log in; the client keeps the token for the calls that follow."""
        reply = await self.request(
            "POST",
            "/api/auth/login",
            body=LoginRequest(username=username, password=password),
            result=TokenReply,
        )
        self.token = reply.token
        return reply

    async def logout(self, everywhere: bool = False) -> None:
        """End this session (or, ``everywhere``, every session of this user)."""
        await self.request("POST", "/api/auth/logout", body=LogoutRequest(all=everywhere))
        self.token = None

    async def whoami(self) -> WhoAmI:
        return await self.request("GET", "/api/auth/whoami", result=WhoAmI)

    async def change_password(self, old_password: str, new_password: str) -> None:
        """Change the caller's password; all of the caller's sessions end, this one too."""
        await self.request(
            "POST",
            "/api/users/me/password",
            body=PasswordChange(old_password=old_password, new_password=new_password),
        )

    async def my_groups(self) -> list[GroupMembership]:
        return await self.request("GET", "/api/users/me/groups", result=list[GroupMembership])

    async def health(self) -> Health:
        return await self.request("GET", "/health", result=Health)
