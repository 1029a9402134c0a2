"""Groups and member roles (FEATURES G1-G4), and the one role check every service uses."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mitosis_sdk.errors import ErrorCode
from mitosis_sdk.schemas import GroupInfo, Member, Role, UserState
from mitosis_sdk.units import apply_quota_change, parse_size_change
from mitosis_server.db.models import Group, Membership, Task, User, Worker, WorkerGrant
from mitosis_server.errors import DomainError, conflict, forbidden, invalid, not_found
from mitosis_server.services.auth import Principal
from mitosis_server.services.users import groups_created, name_taken


def _hidden(name: str) -> DomainError:
    # Non-members learn nothing about a group, not even whether it exists.
    return not_found(f"group {name!r} (or you are not a member)")


async def role_in(db: AsyncSession, principal: Principal, group: Group) -> Role | None:
    """The caller's effective role: admins of Mitosis are admins of every group."""
    if principal.is_admin:
        return Role.ADMIN
    role = await db.scalar(
        select(Membership.role).where(
            Membership.group_id == group.id, Membership.user_id == principal.user_id
        )
    )
    return Role(role) if role else None


async def require_role(
    db: AsyncSession, principal: Principal, group_name: str, needed: Role
) -> tuple[Group, Role]:
    """The group and the caller's role in it, or 404 (non-member) / 403 (role too low)."""
    group = await db.scalar(select(Group).where(Group.name == group_name))
    role = None if group is None else await role_in(db, principal, group)
    check_role(group_name, role, needed)
    return group, role


def check_role(group_name: str, role: Role | None, needed: Role) -> None:
    """404 for a non-member (``role`` None, also when the group does not exist), 403 when
    ``role`` is too low for ``needed``."""
    if role is None:
        raise _hidden(group_name)
    if not role.allows(needed):
        raise forbidden(
            f"you have role {role} in group {group_name!r}; this needs {needed} or higher"
        )


async def create_group(
    db: AsyncSession, principal: Principal, name: str, storage_quota: int
) -> GroupInfo:
    creator = await db.get_one(User, principal.user_id)
    used = await groups_created(db, creator.id)
    if used >= creator.group_quota and not creator.is_admin:
        raise DomainError(
            ErrorCode.QUOTA_EXCEEDED,
            f"you have created {used} of the {creator.group_quota} groups your quota allows;"
            " ask an administrator to raise it",
        )
    if await name_taken(db, name):
        raise conflict(f"the name {name!r} is already taken by a user or a group")
    group = Group(name=name, creator_id=creator.id, personal=False, storage_quota=storage_quota)
    db.add(group)
    await db.flush()
    db.add(Membership(group_id=group.id, user_id=creator.id, role=Role.ADMIN))
    await db.flush()
    return await describe_group(db, principal, name)


async def usage_counts(db: AsyncSession, group_id: int) -> tuple[int, int]:
    """(tasks, workers) of a group: all its tasks, and the registered workers granting it."""
    tasks = await db.scalar(select(func.count()).where(Task.group_id == group_id))
    workers = await db.scalar(
        select(func.count())
        .select_from(WorkerGrant)
        .join(Worker, Worker.id == WorkerGrant.worker_id)
        .where(WorkerGrant.group_id == group_id, Worker.state != "stopped")
    )
    return tasks, workers


async def describe_group(db: AsyncSession, principal: Principal, name: str) -> GroupInfo:
    group, role = await require_role(db, principal, name, Role.READ)
    creator = await db.scalar(select(User.name).where(User.id == group.creator_id))
    tasks, workers = await usage_counts(db, group.id)
    members = None
    if role == Role.ADMIN:
        rows = await db.execute(
            select(User.name, Membership.role)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.group_id == group.id)
            .order_by(User.name)
        )
        members = [Member(username=n, role=Role(r)) for n, r in rows]
    return GroupInfo(
        name=group.name,
        creator=creator or "",
        state=group.state,
        personal=group.personal,
        created_at=group.created_at,
        task_count=tasks,
        worker_count=workers,
        storage_used=group.storage_used,
        storage_quota=group.storage_quota,
        my_role=role,
        members=members,
    )


async def _admin_count(db: AsyncSession, group_id: int) -> int:
    return await db.scalar(
        select(func.count()).where(Membership.group_id == group_id, Membership.role == Role.ADMIN)
    )


def _last_admin_error(name: str) -> DomainError:
    return conflict(f"group {name!r} would have no admin left; make another member admin first")


async def update_members(
    db: AsyncSession, principal: Principal, name: str, members: list[Member]
) -> GroupInfo:
    """Add members or change roles, all or nothing."""
    group, _ = await require_role(db, principal, name, Role.ADMIN)
    seen: set[str] = set()
    for member in members:
        if member.username in seen:
            raise invalid("members", f"{member.username!r} is listed twice")
        seen.add(member.username)
    users = {u.name: u for u in await db.scalars(select(User).where(User.name.in_(seen)))}
    for username in seen:
        user = users.get(username)
        if user is None:
            raise not_found(f"user {username!r}")
        if user.state == UserState.DELETED:
            raise conflict(f"user {username!r} is deleted")
    current = dict(
        (
            await db.execute(
                select(Membership.user_id, Membership).where(Membership.group_id == group.id)
            )
        ).all()
    )
    for member in members:
        user = users[member.username]
        existing = current.get(user.id)
        if existing is None:
            db.add(Membership(group_id=group.id, user_id=user.id, role=member.role))
        else:
            existing.role = member.role
    await db.flush()
    if await _admin_count(db, group.id) == 0:
        raise _last_admin_error(name)
    return await describe_group(db, principal, name)


async def remove_members(
    db: AsyncSession, principal: Principal, name: str, usernames: list[str]
) -> GroupInfo | None:
    """Remove members, all or nothing; None when the caller removed their own access."""
    group, _ = await require_role(db, principal, name, Role.ADMIN)
    ids = dict((await db.execute(select(User.name, User.id).where(User.name.in_(usernames)))).all())
    members = set(
        await db.scalars(
            select(Membership.user_id).where(
                Membership.group_id == group.id, Membership.user_id.in_(ids.values())
            )
        )
    )
    for username in usernames:
        if ids.get(username) not in members:
            raise not_found(f"member {username!r} of group {name!r}")
    await db.execute(
        delete(Membership).where(Membership.group_id == group.id, Membership.user_id.in_(members))
    )
    await db.flush()
    if await _admin_count(db, group.id) == 0:
        raise _last_admin_error(name)
    if await role_in(db, principal, group) is None:
        return None
    return await describe_group(db, principal, name)


async def change_storage_quota(
    db: AsyncSession, principal: Principal, name: str, change: str
) -> GroupInfo:
    group = await db.scalar(select(Group).where(Group.name == name))
    if group is None:
        raise not_found(f"group {name!r}")
    try:
        group.storage_quota = apply_quota_change(group.storage_quota, parse_size_change(change))
    except ValueError as exc:
        raise invalid("change", str(exc)) from None
    await db.flush()
    return await describe_group(db, principal, name)
