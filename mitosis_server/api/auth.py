"""Login, logout and the caller's own account."""

from __future__ import annotations

from litestar import Controller, Request, get, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from mitosis_sdk.schemas import (
    GroupMembership,
    LoginRequest,
    LogoutRequest,
    PasswordChange,
    TokenReply,
    WhoAmI,
)
from mitosis_server.api.guards import DB, Caller, client_address, users_only
from mitosis_server.services import auth, users
from mitosis_server.state import Coordinator


def _coordinator(request: Request) -> Coordinator:
    return request.app.state.coordinator


class AuthController(Controller):
    path = "/api/auth"
    tags = ["accounts"]

    @post("/login", status_code=HTTP_200_OK, summary="Log in and get an access token")
    async def login(self, request: Request, db: DB, data: JSONBody[LoginRequest]) -> TokenReply:
        return await _coordinator(request).authenticator.login(
            db, data.username, data.password, client_address(request)
        )

    @post("/logout", status_code=HTTP_204_NO_CONTENT, guards=[users_only])
    async def logout(
        self, request: Request, db: DB, principal: Caller, data: JSONBody[LogoutRequest]
    ) -> None:
        """End this session, or with ``all`` every session of the caller."""
        await auth.logout(db, principal, data.all)
        _coordinator(request).authenticator.forget(None if data.all else principal.session_id)

    @get("/whoami", summary="The caller: admin flag, groups with roles, token expiry")
    async def whoami(self, db: DB, principal: Caller) -> WhoAmI:
        return await users.whoami(db, principal)


class MeController(Controller):
    path = "/api/users/me"
    tags = ["accounts"]
    guards = [users_only]

    @post("/password", status_code=HTTP_204_NO_CONTENT)
    async def change_password(
        self, request: Request, db: DB, principal: Caller, data: JSONBody[PasswordChange]
    ) -> None:
        """Change the caller's password; every session of the caller ends."""
        await auth.change_own_password(db, principal, data.old_password, data.new_password)
        _coordinator(request).authenticator.forget()

    @get("/groups", summary="The caller's groups and roles")
    async def groups(self, db: DB, principal: Caller) -> list[GroupMembership]:
        return await users.my_groups(db, principal.user_id)


ROUTES = [AuthController, MeController]
