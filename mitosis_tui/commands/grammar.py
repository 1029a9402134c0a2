"""The command tree of ``mitosis-tui --batch`` and of the TUI's ``:`` command line.

Names follow FEATURES C2 (the established Mitosis client's), so existing scripts carry over.
Each command family registers its parsers and handlers in its own module.
"""

from __future__ import annotations

from mitosis_tui.commands import accounts, admin, events, files, groups, tasks, workers
from mitosis_tui.commands.parsing import Parser, subcommands

# files adds `groups attachments` and `tasks artifacts` to those families: keep it last.
FAMILIES = (accounts, groups, tasks, workers, events, admin, files)


def build_command_parser(prog: str = "mitosis-tui --batch") -> Parser:
    parser = Parser(prog=prog, description="Run one Mitosis command.")
    commands = subcommands(parser, "command")
    for family in FAMILIES:
        family.register(commands)
    return parser
