"""Administration: users, quotas and coordinator shutdown (Mitosis admins only)."""

from __future__ import annotations

import asyncio
import os
import signal

from litestar import Controller, Request, delete, get, post
from litestar.params import JSONBody
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_201_CREATED,
    HTTP_202_ACCEPTED,
    HTTP_204_NO_CONTENT,
)

from mitosis_sdk.schemas import (
    GroupInfo,
    Name,
    PasswordReset,
    QuotaEdit,
    UserCreate,
    UserInfo,
    UserStateChange,
    WorkerInfo,
    WorkerShutdown,
)
from mitosis_server.api.guards import DB, Caller, PathUUID, admin_only, users_only
from mitosis_server.services import groups, users, worker_admin


class AdminController(Controller):
    path = "/api/admin"
    tags = ["admin"]
    guards = [users_only, admin_only]

    @post("/users", status_code=HTTP_201_CREATED, summary="Create a user and its personal group")
    async def create_user(self, request: Request, db: DB, data: JSONBody[UserCreate]) -> UserInfo:
        settings = request.app.state.coordinator.settings
        user = await users.create_user(
            db,
            data.username,
            data.password,
            admin=data.admin,
            group_quota=settings.default_group_quota,
            storage_quota=settings.default_storage_quota,
        )
        return await users.user_info(db, user)

    @get("/users", summary="Every user with state and quota")
    async def list_users(self, db: DB) -> list[UserInfo]:
        return await users.list_users(db)

    @delete("/users/{name:str}", status_code=HTTP_204_NO_CONTENT, summary="Delete (soft) a user")
    async def delete_user(self, request: Request, db: DB, principal: Caller, name: Name) -> None:
        await users.delete_user(db, principal, name)
        request.app.state.coordinator.authenticator.forget()

    @post("/users/{name:str}/password", status_code=HTTP_204_NO_CONTENT)
    async def reset_password(
        self, request: Request, db: DB, name: Name, data: JSONBody[PasswordReset]
    ) -> None:
        """Set a user's password; all of that user's sessions end."""
        await users.reset_password(db, name, data.new_password)
        request.app.state.coordinator.authenticator.forget()

    @post("/users/{name:str}/state", status_code=HTTP_200_OK, summary="Lock or unlock a user")
    async def set_state(
        self,
        request: Request,
        db: DB,
        principal: Caller,
        name: Name,
        data: JSONBody[UserStateChange],
    ) -> UserInfo:
        info = await users.set_state(db, principal, name, data.state)
        request.app.state.coordinator.authenticator.forget()
        return info

    @post("/users/{name:str}/group-quota", status_code=HTTP_200_OK)
    async def group_quota(self, db: DB, name: Name, data: JSONBody[QuotaEdit]) -> UserInfo:
        """Change how many groups a user may create: ``+N``, ``-N``, ``=N`` or ``N``."""
        return await users.change_group_quota(db, name, data.change)

    @post("/groups/{name:str}/storage-quota", status_code=HTTP_200_OK)
    async def storage_quota(
        self, db: DB, principal: Caller, name: Name, data: JSONBody[QuotaEdit]
    ) -> GroupInfo:
        """Change a group's storage quota: ``+2GB``, ``-500MiB``, ``=16GB`` or ``16GB``."""
        return await groups.change_storage_quota(db, principal, name, data.change)

    @post("/workers/{worker_id:uuid}/shutdown", status_code=HTTP_200_OK, summary="Stop any worker")
    async def shutdown_worker(
        self,
        request: Request,
        db: DB,
        principal: Caller,
        worker_id: PathUUID,
        data: JSONBody[WorkerShutdown],
    ) -> WorkerInfo:
        """Graceful (drain, then exit) or ``force`` (kill its tasks; they are requeued)."""
        return await worker_admin.shutdown_worker(
            db, principal, worker_id, data.force, request.app.state.coordinator.wakeups
        )

    @post("/shutdown", status_code=HTTP_202_ACCEPTED, summary="Stop this coordinator gracefully")
    async def shutdown(self) -> None:
        # Answer first, then let the server drain in-flight requests as on SIGTERM.
        asyncio.get_running_loop().call_later(0.2, os.kill, os.getpid(), signal.SIGTERM)


ROUTES = [AdminController]
