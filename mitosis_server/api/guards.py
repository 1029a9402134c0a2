"""Authentication middleware and the dependencies controllers declare.

Every route needs a valid token unless it is listed in ``PUBLIC_PATHS``: an endpoint someone
forgets to protect is protected anyway.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.params import FromPath
from sqlalchemy.ext.asyncio import AsyncSession

from mitosis_server.db.engine import transaction
from mitosis_server.errors import forbidden
from mitosis_server.services.auth import Principal, unauthorized
from mitosis_server.services.uploads import Objects
from mitosis_server.state import Coordinator

# ``/objects/`` serves the local object store: the URL's signature stands in for a token.
PUBLIC_PATHS = ["^/api/auth/login$", "^/health$", "^/ready$", "^/schema", "^/objects/"]


class TokenAuthentication(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("this needs a token: log in first")
        coordinator: Coordinator = connection.app.state.coordinator
        principal = await coordinator.authenticator.authenticate(
            coordinator.sessions, token.strip()
        )
        return AuthenticationResult(user=principal, auth=token)


# Guards are coroutines on purpose: Litestar runs a plain function guard in a worker thread,
# a thread hop per request for a check that takes microseconds.


async def admin_only(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    principal: Principal = connection.user
    if not principal.is_admin:
        raise forbidden("only Mitosis administrators may do this")


async def users_only(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Worker tokens act for their worker only, never as the user who started it."""
    principal: Principal = connection.user
    if principal.worker_id is not None:
        raise forbidden("a worker token cannot do this")


async def own_worker_only(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """A worker's own calls need the token it got at registration, bound to its id."""
    principal: Principal = connection.user
    if principal.worker_id is None:
        raise forbidden("this needs the worker's own token (the one registration returned)")
    if principal.worker_id != str(connection.path_params.get("worker_id")):
        raise forbidden("this token belongs to another worker")


async def provide_principal(request: Request) -> Principal:
    return request.user


def provide_objects(request: Request) -> Objects:
    """The object store and URL lifetime, for controllers of files."""
    coordinator: Coordinator = request.app.state.coordinator
    return Objects(coordinator.store, coordinator.settings.url_lifetime)


async def provide_db(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's session owns the transaction: commit on success, roll back on error."""
    coordinator: Coordinator = request.app.state.coordinator
    async with transaction(coordinator.sessions) as session:
        yield session


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


# Handler parameters filled by the app-level dependencies above.
DB = NamedDependency[AsyncSession]
Caller = NamedDependency[Principal]
Files = NamedDependency[Objects]
# A UUID in the path (``{task_id:uuid}``); anything else there is a 400.
PathUUID = FromPath[uuid.UUID]
