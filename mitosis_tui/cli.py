"""``mitosis-tui``: the full-screen client, or with ``--batch`` the scriptable commands.

``mitosis-tui [-c URL] [-u USER]`` starts the full-screen client with the cached token (or
the login screen).

Global options come before the command: ``mitosis-tui --batch -c URL -u USER --json
groups get lab``. Without a command, ``--batch`` reads commands from stdin, one per line.
The batch path never imports Textual, so scripts start fast and run without a terminal.
"""

from __future__ import annotations

import argparse
import sys

from mitosis_sdk.config import ConfigError, add_option_flags, flag_values, load_settings
from mitosis_tui.commands import exitcodes
from mitosis_tui.commands.runner import run_batch_sync
from mitosis_tui.config import ClientSettings

EPILOG = """\
exit codes: 0 ok, 1 failed (or a waited task did not complete), 2 usage, 3 authentication,
4 not found or forbidden, 5 conflict, 6 cannot reach the coordinator.
Run `mitosis-tui --batch --help-commands` for the command list and
`mitosis-tui --batch COMMAND --help` for one command."""


def global_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mitosis-tui",
        description="Mitosis client: a full-screen terminal UI, or scriptable batch commands.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--batch", action="store_true", help="run a command (or stdin) and exit")
    parser.add_argument("--json", action="store_true", help="batch output as JSON")
    parser.add_argument("--config", metavar="FILE", help="config file ([client] section)")
    parser.add_argument(
        "--help-commands", action="store_true", help="list the batch commands and exit"
    )
    add_option_flags(
        parser, ClientSettings, short={"coordinator": "-c", "user": "-u", "password": "-p"}
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="batch command and arguments")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = global_parser().parse_args(argv)
    if args.help_commands:
        from mitosis_tui.commands.grammar import build_command_parser

        build_command_parser().print_help()
        return exitcodes.OK
    try:
        settings = load_settings(
            ClientSettings,
            "client",
            config_file=args.config,
            flags=flag_values(args, ClientSettings),
        )
    except ConfigError as exc:
        print(f"mitosis-tui: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.batch:
        return run_batch_sync(settings, command, as_json=args.json)
    if command:
        print("mitosis-tui: commands need --batch (or use `:` inside the TUI)", file=sys.stderr)
        return exitcodes.USAGE
    return run_tui(settings)


def run_tui(settings: ClientSettings) -> int:
    """The full-screen client. Textual is imported here only, so --batch never loads it."""
    from mitosis_tui.app import MitosisApp

    app = MitosisApp(
        settings.coordinator,
        settings.user,
        settings.password,
        timeout=settings.timeout,
    )
    app.run()
    return exitcodes.OK if app.return_code in (None, 0) else exitcodes.FAILED


if __name__ == "__main__":
    sys.exit(main())
