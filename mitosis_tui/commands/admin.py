"""admin users …, admin groups storage-quota, admin shutdown (Mitosis admins only)."""

from __future__ import annotations

from argparse import Namespace

from mitosis_sdk.schemas import UserState
from mitosis_sdk.units import format_size
from mitosis_tui.commands import workers
from mitosis_tui.commands.parsing import subcommands
from mitosis_tui.commands.session import CommandSession

USER_COLUMNS = [
    ("USER", lambda u: u.username),
    ("ADMIN", lambda u: u.is_admin),
    ("STATE", lambda u: u.state),
    ("GROUPS", lambda u: f"{u.groups_created}/{u.group_quota}"),
    ("CREATED", lambda u: u.created_at),
]


async def create_user(s: CommandSession, args: Namespace) -> None:
    user = await s.call(lambda c: c.create_user(args.username, args.password, args.admin))
    s.out.done(f"created user {user.username}", user)


async def list_users(s: CommandSession, args: Namespace) -> None:
    s.out.table(await s.call(lambda c: c.list_users()), USER_COLUMNS)


async def delete_user(s: CommandSession, args: Namespace) -> None:
    await s.call(lambda c: c.delete_user(args.username))
    s.out.done(f"deleted user {args.username} (the name stays reserved)")


async def change_password(s: CommandSession, args: Namespace) -> None:
    await s.call(lambda c: c.reset_password(args.username, args.new))
    s.out.done(f"password of {args.username} changed; their sessions have ended")


async def set_state(s: CommandSession, args: Namespace) -> None:
    user = await s.call(lambda c: c.set_user_state(args.username, UserState(args.state)))
    s.out.done(f"{user.username} is now {user.state}", user)


async def group_quota(s: CommandSession, args: Namespace) -> None:
    user = await s.call(lambda c: c.change_group_quota(args.username, args.change))
    s.out.done(f"{user.username} may create {user.group_quota} groups", user)


async def storage_quota(s: CommandSession, args: Namespace) -> None:
    group = await s.call(lambda c: c.change_storage_quota(args.group, args.change))
    s.out.done(f"storage quota of {group.name} is now {format_size(group.storage_quota)}", group)


async def shutdown(s: CommandSession, args: Namespace) -> None:
    await s.call(lambda c: c.shutdown())
    s.out.done(f"coordinator at {s.url} is shutting down")


def register(commands) -> None:
    admin = subcommands(commands.add_parser("admin", help="administration"), "admin_command")
    users = subcommands(admin.add_parser("users", help="manage users"), "admin_users_command")
    p = users.add_parser("create", help="create a user with a personal group")
    p.add_argument("username")
    p.add_argument("password")
    p.add_argument("--admin", action="store_true", help="make the user a Mitosis admin")
    p.set_defaults(handler=create_user)
    p = users.add_parser("list", help="list users")
    p.set_defaults(handler=list_users)
    p = users.add_parser("delete", help="delete a user (soft: the name stays reserved)")
    p.add_argument("username")
    p.set_defaults(handler=delete_user)
    p = users.add_parser("change-password", help="set a user's password")
    p.add_argument("username")
    p.add_argument("new")
    p.set_defaults(handler=change_password)
    p = users.add_parser("state", help="lock or unlock a user")
    p.add_argument("username")
    p.add_argument("state", choices=["active", "locked"])
    p.set_defaults(handler=set_state)
    p = users.add_parser("group-quota", help="change how many groups a user may create")
    p.add_argument("username")
    p.add_argument("change", metavar="OP", help="+N, -N, =N or N")
    p.set_defaults(handler=group_quota)

    groups = subcommands(admin.add_parser("groups", help="manage groups"), "admin_groups_command")
    p = groups.add_parser("storage-quota", help="change a group's storage quota")
    p.add_argument("group")
    p.add_argument("change", metavar="OP", help="+2GB, -500MiB, =16GB or 16GB")
    p.set_defaults(handler=storage_quota)

    workers.register_admin(admin)

    p = admin.add_parser("shutdown", help="stop the coordinator gracefully")
    p.set_defaults(handler=shutdown)
