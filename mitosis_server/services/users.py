"""User accounts: creation with a personal group, admin management, the caller's identity."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mitosis_sdk.schemas import GroupMembership, Role, UserInfo, UserState, WhoAmI
from mitosis_sdk.units import apply_quota_change, parse_count_change
from mitosis_server.db.models import Group, Membership, User
from mitosis_server.errors import conflict, forbidden, invalid, not_found
from mitosis_server.services.auth import Principal, revoke_all_sessions
from mitosis_server.services.passwords import hash_password, verify_password


async def name_taken(db: AsyncSession, name: str) -> bool:
    """Users and groups share one namespace (every user owns a group of the same name)."""
    in_groups = await db.scalar(select(func.count()).where(Group.name == name))
    in_users = await db.scalar(select(func.count()).where(User.name == name))
    return bool(in_groups or in_users)


async def create_user(
    db: AsyncSession,
    name: str,
    password: str,
    *,
    admin: bool,
    group_quota: int,
    storage_quota: int,
) -> User:
    if await name_taken(db, name):
        raise conflict(f"the name {name!r} is already taken by a user or a group")
    user = User(
        name=name,
        password_hash=await hash_password(password),
        is_admin=admin,
        state=UserState.ACTIVE,
        token_version=0,
        group_quota=group_quota,
    )
    db.add(user)
    await db.flush()
    group = Group(
        name=name,
        creator_id=user.id,
        personal=True,
        storage_quota=storage_quota,
        storage_used=0,
    )
    db.add(group)
    await db.flush()
    db.add(Membership(group_id=group.id, user_id=user.id, role=Role.ADMIN))
    await db.flush()
    return user


async def get_user(db: AsyncSession, name: str) -> User:
    user = await db.scalar(select(User).where(User.name == name))
    if user is None:
        raise not_found(f"user {name!r}")
    return user


async def groups_created(db: AsyncSession, user_id: int) -> int:
    """Groups this user created, not counting the personal one (that is what the quota caps)."""
    return await db.scalar(
        select(func.count()).where(Group.creator_id == user_id, Group.personal.is_(False))
    )


async def user_info(db: AsyncSession, user: User) -> UserInfo:
    return UserInfo(
        username=user.name,
        is_admin=user.is_admin,
        state=UserState(user.state),
        group_quota=user.group_quota,
        groups_created=await groups_created(db, user.id),
        created_at=user.created_at,
    )


async def list_users(db: AsyncSession) -> list[UserInfo]:
    created = dict(
        (
            await db.execute(
                select(Group.creator_id, func.count())
                .where(Group.personal.is_(False))
                .group_by(Group.creator_id)
            )
        ).all()
    )
    users = (await db.scalars(select(User).order_by(User.name))).all()
    return [
        UserInfo(
            username=u.name,
            is_admin=u.is_admin,
            state=UserState(u.state),
            group_quota=u.group_quota,
            groups_created=created.get(u.id, 0),
            created_at=u.created_at,
        )
        for u in users
    ]


async def my_groups(db: AsyncSession, user_id: int) -> list[GroupMembership]:
    rows = await db.execute(
        select(Group.name, Membership.role)
        .join(Membership, Membership.group_id == Group.id)
        .where(Membership.user_id == user_id)
        .order_by(Group.name)
    )
    return [GroupMembership(group=name, role=Role(role)) for name, role in rows]


async def whoami(db: AsyncSession, principal: Principal) -> WhoAmI:
    user = await db.get_one(User, principal.user_id)
    return WhoAmI(
        username=user.name,
        is_admin=user.is_admin,
        state=UserState(user.state),
        groups=await my_groups(db, user.id),
        token_expires_at=principal.token_expires_at,
    )


async def set_state(db: AsyncSession, actor: Principal, name: str, state: UserState) -> UserInfo:
    user = await get_user(db, name)
    if user.state == UserState.DELETED:
        raise conflict(f"user {name!r} is deleted; deleted accounts stay deleted")
    if state == UserState.DELETED:
        raise invalid("state", "use `admin users delete` to delete an account")
    if user.id == actor.user_id and state != UserState.ACTIVE:
        raise forbidden("you cannot lock your own account")
    if user.state != state:
        user.state = state
        if state != UserState.ACTIVE:
            await revoke_all_sessions(db, user.id)
    await db.flush()
    return await user_info(db, user)


async def delete_user(db: AsyncSession, actor: Principal, name: str) -> None:
    """Soft delete: the account stops working, the name stays reserved."""
    user = await get_user(db, name)
    if user.id == actor.user_id:
        raise forbidden("you cannot delete your own account")
    if user.state == UserState.DELETED:
        raise conflict(f"user {name!r} is already deleted")
    user.state = UserState.DELETED
    await revoke_all_sessions(db, user.id)
    await db.flush()


async def reset_password(db: AsyncSession, name: str, new_password: str) -> None:
    user = await get_user(db, name)
    if user.state == UserState.DELETED:
        raise conflict(f"user {name!r} is deleted")
    user.password_hash = await hash_password(new_password)
    await revoke_all_sessions(db, user.id)


async def change_group_quota(db: AsyncSession, name: str, change: str) -> UserInfo:
    user = await get_user(db, name)
    try:
        user.group_quota = apply_quota_change(user.group_quota, parse_count_change(change))
    except ValueError as exc:
        raise invalid("change", str(exc)) from None
    await db.flush()
    return await user_info(db, user)


async def bootstrap_admin(
    db: AsyncSession, name: str, password: str, group_quota: int, storage_quota: int
) -> tuple[bool, bool]:
    """Create the first admin when there are no users; (created, default password in use)."""
    if await db.scalar(select(func.count()).select_from(User)):
        admin = await db.scalar(select(User).where(User.name == name, User.is_admin.is_(True)))
        weak = admin is not None and await verify_password(admin.password_hash, password)
        return False, weak and password == "mitosis_admin"
    # A conflict here means another coordinator created it since the count: the caller
    # looks again in a new transaction.
    await create_user(
        db, name, password, admin=True, group_quota=group_quota, storage_quota=storage_quota
    )
    return True, password == "mitosis_admin"
