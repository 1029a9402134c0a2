"""Layered configuration shared by the coordinator, the worker and the client.

Each program describes its options once, as a msgspec Struct whose fields carry a help text
and, for durations and sizes, a unit marker. From that one description this module derives
the TOML section, the ``MITO_*`` environment variables and the ``--flags``, and merges them:

    defaults <- $CONFIG_DIR/mitosis/config.toml <- --config FILE <- MITO_* environment <- flags

A bad value anywhere raises :class:`ConfigError` naming the option, where it came from and
the accepted form; the programs print it and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import platformdirs

from mitosis_sdk.units import parse_duration, parse_size

__all__ = [
    "DURATION",
    "SIZE",
    "ConfigError",
    "Option",
    "add_option_flags",
    "default_config_path",
    "flag_values",
    "load_settings",
]


class Option:
    """Help text (and, for durations/sizes, the unit) of one option, used in Annotated."""

    __slots__ = ("help", "unit")

    def __init__(self, help: str, unit: str | None = None) -> None:
        self.help = help
        self.unit = unit


DURATION = "duration"
SIZE = "size"


class ConfigError(ValueError):
    """A configuration value is unusable; the message names option, source and form."""


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir("mitosis")) / "config.toml"


def _options(cls: type[msgspec.Struct]) -> dict[str, Option]:
    hints = typing.get_type_hints(cls, include_extras=True)
    found = {}
    for name, hint in hints.items():
        meta = [m for m in getattr(hint, "__metadata__", ()) if isinstance(m, Option)]
        found[name] = meta[0] if meta else Option("")
    return found


def _coerce(name: str, option: Option, value: Any, source: str) -> Any:
    try:
        if option.unit == DURATION and value is not None:
            return parse_duration(value)
        if option.unit == SIZE and value is not None:
            return parse_size(value)
    except ValueError as exc:
        raise ConfigError(f"{source}: option {name!r}: {exc}") from None
    return value


def _read_toml(path: Path, section: str) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    table = data.get(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [{section}] must be a table")
    return table


S = typing.TypeVar("S", bound=msgspec.Struct)


def load_settings(
    cls: type[S],
    section: str,
    *,
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    use_default_file: bool = True,
) -> S:
    """The settings of one program, merged from every layer and validated."""
    env = os.environ if env is None else env
    options = _options(cls)
    layers: list[tuple[str, dict[str, Any]]] = []
    default_file = default_config_path()
    if use_default_file and default_file.is_file():
        layers.append((str(default_file), _read_toml(default_file, section)))
    config_file = config_file or env.get("MITO_CONFIG")
    if config_file:
        layers.append((str(config_file), _read_toml(Path(config_file), section)))
    layers.append(
        (
            "environment",
            {
                name: env[f"MITO_{name.upper()}"]
                for name in options
                if f"MITO_{name.upper()}" in env
            },
        )
    )
    layers.append(("command line", {k: v for k, v in (flags or {}).items() if v is not None}))

    merged: dict[str, Any] = {}
    for source, values in layers:
        for name, value in values.items():
            if name not in options:
                where = f"[{section}] in {source}" if source.endswith(".toml") else source
                raise ConfigError(f"{where}: unknown option {name!r}")
            merged[name] = _coerce(name, options[name], value, source)
    try:
        return msgspec.convert(merged, cls, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None


def add_option_flags(
    parser: argparse.ArgumentParser,
    cls: type[msgspec.Struct],
    short: Mapping[str, str] | None = None,
) -> None:
    """One ``--flag-name`` per option (plus the given short aliases), defaulting to unset."""
    short = short or {}
    defaults = {f.name: f.default for f in msgspec.structs.fields(cls)}
    for name, option in _options(cls).items():
        flag = "--" + name.replace("_", "-")
        names = [short[name], flag] if name in short else [flag]
        default = defaults.get(name)
        shown = "" if default in (None, msgspec.NODEFAULT, "") else f" (default: {default})"
        hint = typing.get_type_hints(cls)[name]
        if hint is bool:
            parser.add_argument(
                *names,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=option.help + shown,
            )
        else:
            parser.add_argument(
                *names, dest=name, default=None, metavar=name.upper(), help=option.help + shown
            )


def flag_values(namespace: argparse.Namespace, cls: type[msgspec.Struct]) -> dict[str, Any]:
    """The options given on the command line, ready for :func:`load_settings`."""
    return {name: getattr(namespace, name, None) for name in _options(cls)}
