"""Limits and field rules of the wire (FEATURES V), shared by every schema module.

The same checks run in the client (constructing a Struct) and in the coordinator (decoding a
request), so an over-long env or a ``10x`` timeout fails the same way on both sides, with a
message naming the field and the rule.
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

from mitosis_sdk.units import parse_duration

MAX_TAGS = 32
MAX_ENV_ENTRIES = 256
MAX_ENV_BYTES = 64 * 1024
MAX_ARGV_BYTES = 64 * 1024
MAX_BATCH = 10_000
MAX_RESOURCES = 256
MAX_DEPENDENCIES = 256
DEFAULT_TIMEOUT = 600.0
MIN_TIMEOUT = 1.0
MAX_TIMEOUT = 30 * 86400.0
MAX_PAGE = 1000

TAG_PATTERN = r"^[^\s,]{1,128}$"
ENV_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,255}$"
COMPARISON_PATTERN = r"^\s*(=|==|!=|>=|<=|>|<)?\s*-?\d+\s*$"

Tag = Annotated[
    str, msgspec.Meta(pattern=TAG_PATTERN, description="1-128 characters, no spaces or commas")
]
TagList = Annotated[list[Tag], msgspec.Meta(max_length=MAX_TAGS, description="at most 32")]
Duration = Annotated[
    str | float, msgspec.Meta(description="seconds, or text such as 30s, 10m, 2h, 1h30m")
]
Command = Annotated[
    list[str], msgspec.Meta(min_length=1, max_length=65536, description="program and arguments")
]
Priority = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]
Comparison = Annotated[
    str, msgspec.Meta(pattern=COMPARISON_PATTERN, description="=N, !=N, >N, >=N, <N or <=N")
]


def timeout_seconds(value: str | float, field: str = "timeout") -> float:
    """Seconds in a timeout; ValueError naming ``field`` when it is malformed or absurd."""
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from None
    if not MIN_TIMEOUT <= seconds <= MAX_TIMEOUT:
        raise ValueError(f"{field}: must be between 1s and 30d, got {value!r}")
    return seconds


def relative_path(path: str, field: str) -> None:
    parts = path.split("/")
    if (
        not path
        or len(path.encode()) > 1024
        or path.startswith("/")
        or any(p in ("", ".", "..") for p in parts)
        or "\x00" in path
    ):
        raise ValueError(
            f"{field}: {path!r} must be a relative path without '..', '.' or empty parts"
        )


def check_command(command: list[str], field: str = "command") -> None:
    if not command:
        raise ValueError(f"{field}: must name a program to run")
    if not command[0].strip():
        raise ValueError(f"{field}: the program name is empty")
    if sum(len(arg.encode()) + 1 for arg in command) > MAX_ARGV_BYTES:
        raise ValueError(f"{field}: the command line is over 64 KiB")
    if any("\x00" in arg for arg in command):
        raise ValueError(f"{field}: arguments cannot contain NUL characters")


def check_env(env: dict[str, str], field: str = "env") -> None:
    if len(env) > MAX_ENV_ENTRIES:
        raise ValueError(f"{field}: at most {MAX_ENV_ENTRIES} variables, got {len(env)}")
    if sum(len(k.encode()) + len(v.encode()) + 2 for k, v in env.items()) > MAX_ENV_BYTES:
        raise ValueError(f"{field}: the variables are over 64 KiB in total")
    for key, value in env.items():
        if not re.fullmatch(ENV_KEY_PATTERN, key):
            raise ValueError(
                f"{field}: {key!r} is not a variable name (letters, digits, '_'; no digit first)"
            )
        if key.startswith("MITO_"):
            raise ValueError(f"{field}: {key!r}: MITO_* variables are set by the worker")
        if "\x00" in value:
            raise ValueError(f"{field}: the value of {key!r} contains a NUL character")


def check_unique(values: list[str], field: str) -> None:
    if len(set(values)) != len(values):
        repeated = sorted(v for v in set(values) if values.count(v) > 1)
        raise ValueError(f"{field}: {', '.join(repeated)} given more than once")


def parse_comparison(text: str) -> tuple[str, int]:
    """``=0``, ``!=0``, ``>1``, ``<=3`` or ``5`` as (operator, number); ValueError otherwise."""
    match = re.fullmatch(r"\s*(=|==|!=|>=|<=|>|<)?\s*(-?\d+)\s*", text)
    if match is None:
        raise ValueError(f"expected =N, !=N, >N, >=N, <N or <=N, got {text!r}")
    op = match.group(1) or "="
    return ("=" if op == "==" else op), int(match.group(2))
