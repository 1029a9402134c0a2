"""Groups and their members."""

from __future__ import annotations

from litestar import Controller, Request, get, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from mitosis_sdk.schemas import GroupCreate, GroupInfo, MembersRemove, MembersUpdate, Name
from mitosis_server.api.guards import DB, Caller, users_only
from mitosis_server.services import groups


class GroupController(Controller):
    path = "/api/groups"
    tags = ["groups"]
    guards = [users_only]

    @post("/", status_code=HTTP_201_CREATED, summary="Create a group; the caller is its admin")
    async def create(
        self, request: Request, db: DB, principal: Caller, data: JSONBody[GroupCreate]
    ) -> GroupInfo:
        quota = request.app.state.coordinator.settings.default_storage_quota
        return await groups.create_group(db, principal, data.name, quota)

    @get("/{name:str}", summary="A group: usage, quota and (to its admins) members")
    async def get_group(self, db: DB, principal: Caller, name: Name) -> GroupInfo:
        return await groups.describe_group(db, principal, name)

    @post("/{name:str}/members", status_code=HTTP_200_OK, summary="Add members or change roles")
    async def update_members(
        self, db: DB, principal: Caller, name: Name, data: JSONBody[MembersUpdate]
    ) -> GroupInfo:
        return await groups.update_members(db, principal, name, data.members)

    @post("/{name:str}/members/remove", status_code=HTTP_200_OK, summary="Remove members")
    async def remove_members(
        self, db: DB, principal: Caller, name: Name, data: JSONBody[MembersRemove]
    ) -> GroupInfo | None:
        return await groups.remove_members(db, principal, name, data.usernames)


ROUTES = [GroupController]
