"""Groups and members."""

from __future__ import annotations

from mitosis_sdk.client.base import BaseClient
from mitosis_sdk.schemas import GroupCreate, GroupInfo, Member, MembersRemove, MembersUpdate


class GroupsAPI(BaseClient):
    async def create_group(self, name: str) -> GroupInfo:
        return await self.request(
            "POST", "/api/groups", body=GroupCreate(name=name), result=GroupInfo
        )

    async def get_group(self, name: str) -> GroupInfo:
        return await self.request("GET", f"/api/groups/{name}", result=GroupInfo)

    async def update_members(self, group: str, members: list[Member]) -> GroupInfo:
        """Add members or change their roles, all or nothing."""
        return await self.request(
            "POST",
            f"/api/groups/{group}/members",
            body=MembersUpdate(members=members),
            result=GroupInfo,
        )

    async def remove_members(self, group: str, usernames: list[str]) -> GroupInfo | None:
        return await self.request(
            "POST",
            f"/api/groups/{group}/members/remove",
            body=MembersRemove(usernames=usernames),
            result=GroupInfo | None,
        )
