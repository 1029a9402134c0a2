"""Options shared by task commands: filters (query, cancel-many, artifact downloads), spec
fields (submit, change) and the ``-- CMD ARGS…`` tail, turned into wire values."""

from __future__ import annotations

import uuid
from argparse import Namespace
from datetime import UTC, datetime, timedelta

from mitosis_sdk.schemas import (
    ArtifactType,
    Dependency,
    DependencyCondition,
    Resource,
    TaskSpec,
    TaskState,
)
from mitosis_sdk.units import parse_duration
from mitosis_tui.commands.parsing import Parser, build, parse_uuid, split_list
from mitosis_tui.commands.session import UsageError


def parse_resource(text: str) -> Resource:
    """``attachment=KEY:LOCAL_PATH`` or ``artifact=UUID:TYPE:LOCAL_PATH``."""
    kind, sep, rest = text.partition("=")
    try:
        if kind == "attachment" and sep:
            key, _, path = rest.rpartition(":")
            return Resource(attachment=key, path=path)
        if kind == "artifact" and sep:
            task, content, path = rest.split(":", 2)
            return Resource(artifact=uuid.UUID(task), type=ArtifactType(content), path=path)
    except ValueError as exc:
        raise UsageError(f"resource {text!r}: {exc}") from None
    raise UsageError(
        f"resource {text!r}: expected attachment=KEY:LOCAL_PATH or artifact=UUID:TYPE:LOCAL_PATH"
    )


def parse_env(values: list[str] | None) -> dict[str, str]:
    env = {}
    for item in split_list(values):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"environment variable {item!r}: expected KEY=VALUE")
        env[key] = value
    return env


def parse_moment(text: str | None) -> datetime | None:
    """An ISO time (local when no zone is given) or a duration ago (``2h``, ``7d``)."""
    if text is None:
        return None
    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{text!r}: expected an ISO time or a duration ago like 2h") from None
    return moment if moment.tzinfo else moment.astimezone()


def task_filter(args: Namespace) -> dict:
    try:
        states = [TaskState(s) for s in split_list(args.states)]
    except ValueError as exc:
        raise UsageError(f"{exc}; states are {', '.join(TaskState)}") from None
    return {
        "group": args.group,
        "creators": split_list(args.creators),
        "states": states,
        "tags": split_list(args.tags),
        "labels": split_list(args.labels),
        "exit_code": args.exit_code,
        "priority": args.priority,
        "worker": parse_uuid(args.worker) if args.worker else None,
        "created_after": parse_moment(args.created_after),
        "created_before": parse_moment(args.created_before),
        "finished_after": parse_moment(args.finished_after),
        "finished_before": parse_moment(args.finished_before),
        "text": args.text,
        "array": parse_uuid(args.array) if args.array else None,
    }


def spec_fields(args: Namespace) -> dict:
    fields: dict = {}
    if args.tags is not None:
        fields["tags"] = split_list(args.tags)
    if args.env is not None:
        fields["env"] = parse_env(args.env)
    if args.timeout is not None:
        fields["timeout"] = args.timeout
    if args.priority is not None:
        fields["priority"] = args.priority
    if args.resources is not None:
        fields["resources"] = [parse_resource(r) for r in split_list(args.resources)]
    if args.terminal is not None:
        fields["terminal_output"] = args.terminal
    if args.command:
        fields["command"] = args.command
    return fields


def submit_spec(args: Namespace) -> TaskSpec:
    """The spec of ``tasks submit`` (and of the TUI's submit form, which fills the same
    fields), checked by the SDK's own rules: a broken one is a :class:`UsageError`."""
    fields = {**spec_fields(args), **workflow_fields(args)}
    return build(TaskSpec, group=args.group, labels=split_list(args.labels), **fields)


def duration(text: str, option: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def add_filter_options(p) -> None:
    p.add_argument("-g", "--group", help="tasks of this group (default: all your groups)")
    p.add_argument("-c", "--creators", action="append", help="submitted by (comma-separated)")
    p.add_argument("-s", "--states", action="append", help="any of these states")
    p.add_argument("-t", "--tags", action="append", help="having all these tags")
    p.add_argument("-l", "--labels", action="append", help="having all these labels")
    p.add_argument("-e", "--exit-code", metavar="OP", help="exit code: =0, !=0, >1 …")
    p.add_argument("-p", "--priority", metavar="OP", help="priority: =0, >=5, <0 …")
    p.add_argument("--worker", metavar="UUID", help="ran (or runs) on this worker")
    p.add_argument("--text", help="the command line contains this")
    p.add_argument("--array", metavar="ID", help="the tasks of this array (tasks submit --array)")
    for edge in ("created", "finished"):
        for side in ("after", "before"):
            p.add_argument(
                f"--{edge}-{side}", metavar="TIME", help="ISO time, or a duration ago (2h)"
            )


DEPENDENCY_OPTIONS = {
    "after": "after",
    "after_ok": "afterok",
    "after_not_ok": "afternotok",
    "after_any": "afterany",
}


def workflow_fields(args: Namespace) -> dict:
    """Dependencies (T6) and retries (T8) of ``tasks submit``."""
    fields: dict = {}
    depends_on = [
        Dependency(task=parse_uuid(u), condition=DependencyCondition(condition))
        for option, condition in DEPENDENCY_OPTIONS.items()
        for u in split_list(getattr(args, option))
    ]
    if depends_on:
        fields["depends_on"] = depends_on
    if args.retries is not None:
        fields["retries"] = args.retries
    if args.retry_delay is not None:
        fields["retry_delay"] = args.retry_delay
    return fields


def workflow_options(p) -> None:
    for option, condition in DEPENDENCY_OPTIONS.items():
        flag = "--" + option.replace("_", "-")
        p.add_argument(
            flag, action="append", metavar="UUID", help=f"wait for these tasks ({condition})"
        )
    p.add_argument("--retries", type=int, help="retry a failure (exit≠0, timeout) N times")
    p.add_argument("--retry-delay", metavar="D", help="first retry after D, doubling (e.g. 30s)")
    p.add_argument(
        "--array", metavar="SPEC", help="one task per index: 0-99, 0-99:2, 1,5,7; %%N throttle"
    )


def spec_options(p, *, submit: bool) -> None:
    p.add_argument("-t", "--tags", action="append", help="required worker tags")
    p.add_argument("-e", "--env", action="append", metavar="K=V", help="environment variables")
    p.add_argument("--timeout", help="kill after this long (default 10m)")
    p.add_argument("-p", "--priority", type=int, help="higher runs first (default 0)")
    p.add_argument(
        "-r",
        "--resources",
        action="append",
        metavar="RESOURCE",
        help="attachment=KEY:PATH or artifact=UUID:TYPE:PATH",
    )
    p.add_argument(
        "--terminal", action="store_true", default=None, help="keep stdout/stderr (std-log)"
    )
    if not submit:
        p.add_argument(
            "--no-terminal", dest="terminal", action="store_false", help="do not keep them"
        )
    p.add_argument("command", nargs="*", metavar="-- CMD ARGS", help="the command line")


class CommandLineParser(Parser):
    """Everything after the first ``--`` is the task's command line, word for word.

    (argparse alone cannot put ``UUID [options] -- CMD`` together: it fills the positional
    list at its first chance and then refuses the words after ``--``.)
    """

    def parse_known_args(self, args=None, namespace=None):
        words = list(args or [])
        tail: list[str] = []
        if "--" in words:
            cut = words.index("--")
            words, tail = words[:cut], words[cut + 1 :]
        namespace, extras = super().parse_known_args(words, namespace)
        if hasattr(namespace, "command"):
            namespace.command = [*(namespace.command or []), *tail]
        elif tail:
            extras += ["--", *tail]
        return namespace, extras
