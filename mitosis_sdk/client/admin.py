"""Administration: users, quotas, coordinator shutdown (Mitosis admins only)."""

from __future__ import annotations

import uuid

from mitosis_sdk.client.base import BaseClient
from mitosis_sdk.schemas import (
    GroupInfo,
    PasswordReset,
    QuotaEdit,
    UserCreate,
    UserInfo,
    UserState,
    UserStateChange,
    WorkerInfo,
    WorkerShutdown,
)


class AdminAPI(BaseClient):
    async def create_user(self, username: str, password: str, admin: bool = False) -> UserInfo:
        return await self.request(
            "POST",
            "/api/admin/users",
            body=UserCreate(username=username, password=password, admin=admin),
            result=UserInfo,
        )

    async def list_users(self) -> list[UserInfo]:
        return await self.request("GET", "/api/admin/users", result=list[UserInfo])

    async def delete_user(self, username: str) -> None:
        await self.request("DELETE", f"/api/admin/users/{username}")

    async def reset_password(self, username: str, new_password: str) -> None:
        await self.request(
            "POST",
            f"/api/admin/users/{username}/password",
            body=PasswordReset(new_password=new_password),
        )

    async def set_user_state(self, username: str, state: UserState) -> UserInfo:
        return await self.request(
            "POST",
            f"/api/admin/users/{username}/state",
            body=UserStateChange(state=state),
            result=UserInfo,
        )

    async def change_group_quota(self, username: str, change: str) -> UserInfo:
        """``+N``, ``-N``, ``=N`` or ``N`` groups."""
        return await self.request(
            "POST",
            f"/api/admin/users/{username}/group-quota",
            body=QuotaEdit(change=change),
            result=UserInfo,
        )

    async def change_storage_quota(self, group: str, change: str) -> GroupInfo:
        """``+2GB``, ``-500MiB``, ``=16GB`` or ``16GB``."""
        return await self.request(
            "POST",
            f"/api/admin/groups/{group}/storage-quota",
            body=QuotaEdit(change=change),
            result=GroupInfo,
        )

    async def admin_shutdown_worker(
        self, worker: uuid.UUID | str, force: bool = False
    ) -> WorkerInfo:
        """Stop any worker: gracefully (drain, then exit) or ``force`` (kill its tasks)."""
        return await self.request(
            "POST",
            f"/api/admin/workers/{worker}/shutdown",
            body=WorkerShutdown(force=force),
            result=WorkerInfo,
        )

    async def shutdown(self) -> None:
        await self.request("POST", "/api/admin/shutdown")
