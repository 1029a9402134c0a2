"""login, logout, auth/whoami, users change-password, users groups."""

from __future__ import annotations

from argparse import Namespace

from mitosis_tui.commands.parsing import subcommands
from mitosis_tui.commands.session import CommandSession, UsageError

MEMBERSHIP_COLUMNS = [("GROUP", lambda m: m.group), ("ROLE", lambda m: m.role)]


async def login(s: CommandSession, args: Namespace) -> None:
    username = args.username or s.username
    if not username:
        raise UsageError("login needs a user name: `login USER [PASSWORD]` or -u USER")
    await s.login(username, s.password(args.password))
    s.out.done(f"logged in as {username} at {s.url}", {"ok": True, "username": username})


async def logout(s: CommandSession, args: Namespace) -> None:
    await s.call(lambda c: c.logout(everywhere=args.all))
    if s.username:
        s.cache.forget(s.url, s.username)
    s.out.done("logged out" + (" of every session" if args.all else ""))


async def whoami(s: CommandSession, args: Namespace) -> None:
    me = await s.call(lambda c: c.whoami())
    s.out.record(
        me,
        [
            ("user", lambda m: m.username),
            ("coordinator", lambda _: s.url),
            ("admin", lambda m: m.is_admin),
            ("state", lambda m: m.state),
            ("groups", lambda m: [f"{g.group}:{g.role}" for g in m.groups]),
            ("token expires", lambda m: m.token_expires_at),
        ],
    )


async def change_password(s: CommandSession, args: Namespace) -> None:
    old = args.old or s.password(None, "current password: ")
    new = args.new or s.password(None, "new password: ")
    await s.call(lambda c: c.change_password(old, new))
    # Every session ended with the change; log this one in again with the new password.
    await s.login(s.username, new)
    s.out.done("password changed; other sessions have been logged out")


async def my_groups(s: CommandSession, args: Namespace) -> None:
    s.out.table(await s.call(lambda c: c.my_groups()), MEMBERSHIP_COLUMNS)


def register(commands) -> None:
    p = commands.add_parser("login", help="log in and cache the token")
    p.add_argument("username", nargs="?", help="user name (default: -u or the last one)")
    p.add_argument("password", nargs="?", help="password (default: -p, or asked)")
    p.set_defaults(handler=login)

    p = commands.add_parser("logout", help="end this session")
    p.add_argument("--all", action="store_true", help="end every session of this user")
    p.set_defaults(handler=logout)

    for name in ("auth", "whoami"):
        p = commands.add_parser(name, help="show who you are logged in as")
        p.set_defaults(handler=whoami)

    users = subcommands(commands.add_parser("users", help="your own account"), "users_command")
    p = users.add_parser("change-password", help="change your password (ends other sessions)")
    p.add_argument("old", nargs="?", help="current password (default: asked)")
    p.add_argument("new", nargs="?", help="new password (default: asked)")
    p.set_defaults(handler=change_password)
    p = users.add_parser("groups", help="your groups and roles")
    p.set_defaults(handler=my_groups)
