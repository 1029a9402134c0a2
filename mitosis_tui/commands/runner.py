"""Run batch commands: one from the command line, or many from stdin (script mode).

Script mode runs each line (``#`` starts a comment) in the same session, reports a failing
line on stderr and goes on; the exit status is that of the last failing line, 0 if none.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from collections.abc import Sequence
from typing import IO

import httpx

from mitosis_sdk import errors
from mitosis_sdk.auth import CredentialCache
from mitosis_tui.commands import exitcodes
from mitosis_tui.commands.grammar import build_command_parser
from mitosis_tui.commands.output import Output
from mitosis_tui.commands.session import CommandSession, UsageError
from mitosis_tui.config import ClientSettings

# Quota edits start with '-' ("-500MiB"); argparse would take them for options.
_NEGATIVE_VALUE_COMMANDS = {"group-quota", "storage-quota"}


def _protect_negative_values(argv: list[str]) -> list[str]:
    if (
        len(argv) >= 2
        and argv[-1].startswith("-")
        and argv[-1][1:2].isdigit()
        and any(word in _NEGATIVE_VALUE_COMMANDS for word in argv)
        and "--" not in argv
    ):
        return [*argv[:-1], "--", argv[-1]]
    return argv


async def run_command(session: CommandSession, argv: Sequence[str]) -> int:
    """Parse and run one command; every failure becomes a message and an exit code."""
    argv = list(argv)
    options = argv[: argv.index("--")] if "--" in argv else argv
    if "--json" in options:  # accepted after the command too, where people tend to put it
        argv.remove("--json")
        session.out.as_json = True
    parser = build_command_parser()
    try:
        args = parser.parse_args(_protect_negative_values(argv))
        await args.handler(session, args)
        return exitcodes.OK
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except UsageError as exc:
        session.out.error(str(exc))
        return exitcodes.USAGE
    except errors.MitosisError as exc:
        session.out.error(exc.message)
        return exitcodes.exit_code_for(exc)


async def run_batch(
    settings: ClientSettings,
    argv: Sequence[str],
    *,
    as_json: bool = False,
    stdin: IO[str] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    cache: CredentialCache | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> int:
    output = Output(stdout or sys.stdout, stderr or sys.stderr, as_json)
    session = CommandSession(settings, output, cache=cache, transport=transport)
    try:
        if argv:
            return await run_command(session, argv)
        status = exitcodes.OK
        for number, line in enumerate(stdin or sys.stdin, start=1):
            try:
                words = shlex.split(line, comments=True)
            except ValueError as exc:
                output.error(f"line {number}: {exc}")
                status = exitcodes.USAGE
                continue
            if not words:
                continue
            code = await run_command(session, words)
            if code != exitcodes.OK:
                output.info(f"line {number} failed with status {code}: {line.strip()}")
                status = code
        return status
    finally:
        await session.close()


def run_batch_sync(settings: ClientSettings, argv: Sequence[str], **kwargs) -> int:
    return asyncio.run(run_batch(settings, argv, **kwargs))
