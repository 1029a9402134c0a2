"""groups create|get|update-user|remove-user."""

from __future__ import annotations

from argparse import Namespace

from mitosis_sdk.schemas import Member, Role
from mitosis_sdk.units import format_size
from mitosis_tui.commands.parsing import subcommands
from mitosis_tui.commands.session import CommandSession, UsageError

GROUP_FIELDS = [
    ("name", lambda g: g.name),
    ("creator", lambda g: g.creator),
    ("state", lambda g: g.state),
    ("personal", lambda g: g.personal),
    ("my role", lambda g: g.my_role),
    ("tasks", lambda g: g.task_count),
    ("workers", lambda g: g.worker_count),
    ("storage", lambda g: f"{format_size(g.storage_used)} of {format_size(g.storage_quota)}"),
    ("created", lambda g: g.created_at),
    (
        "members",
        lambda g: None if g.members is None else [f"{m.username}:{m.role}" for m in g.members],
    ),
]


def parse_member(text: str) -> Member:
    """``USER:ROLE`` with ROLE one of read, write, admin."""
    username, sep, role = text.partition(":")
    if not sep or not username:
        raise UsageError(f"expected USER:ROLE (role read, write or admin), got {text!r}")
    try:
        return Member(username=username, role=Role(role.lower()))
    except ValueError:
        raise UsageError(f"unknown role {role!r} in {text!r}: use read, write or admin") from None


async def create(s: CommandSession, args: Namespace) -> None:
    group = await s.call(lambda c: c.create_group(args.name))
    s.out.done(f"created group {group.name}", group)


async def get(s: CommandSession, args: Namespace) -> None:
    s.out.record(await s.call(lambda c: c.get_group(args.name)), GROUP_FIELDS)


async def update_user(s: CommandSession, args: Namespace) -> None:
    members = [parse_member(text) for text in args.members]
    group = await s.call(lambda c: c.update_members(args.name, members))
    s.out.done(f"updated {len(members)} member(s) of {args.name}", group)


async def remove_user(s: CommandSession, args: Namespace) -> None:
    group = await s.call(lambda c: c.remove_members(args.name, args.users))
    s.out.done(f"removed {len(args.users)} member(s) from {args.name}", group)


def register(commands) -> None:
    groups = subcommands(commands.add_parser("groups", help="groups and members"), "groups_command")
    p = groups.add_parser("create", help="create a group (you become its admin)")
    p.add_argument("name")
    p.set_defaults(handler=create)
    p = groups.add_parser("get", help="show a group")
    p.add_argument("name")
    p.set_defaults(handler=get)
    p = groups.add_parser("update-user", help="add members or change roles: USER:ROLE ...")
    p.add_argument("name")
    p.add_argument("members", nargs="+", metavar="USER:ROLE")
    p.set_defaults(handler=update_user)
    p = groups.add_parser("remove-user", help="remove members")
    p.add_argument("name")
    p.add_argument("users", nargs="+", metavar="USER")
    p.set_defaults(handler=remove_user)
