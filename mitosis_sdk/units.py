"""Durations and sizes as people type them (``30s``, ``10m``, ``7d``; ``500MB``, ``2GiB``).

Every side of Mitosis -- config files, flags, the wire and the batch commands -- reads these
through this one module, so ``10m`` means the same thing everywhere and every parse error
names the accepted form.
"""

from __future__ import annotations

import re

__all__ = [
    "QuotaChange",
    "apply_quota_change",
    "format_duration",
    "format_size",
    "parse_count_change",
    "parse_duration",
    "parse_size",
    "parse_size_change",
]

_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")

DURATION_FORM = "a duration such as 30s, 10m, 2h, 7d or 1h30m"
SIZE_FORM = "a size such as 500MB, 2GiB or 1024 (bytes)"


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``text``: ``90``, ``30s``, ``10m``, ``1h30m``, ``7d``, ``250ms``.

    Raises ValueError naming the accepted form, so callers can pass the message on as is.
    """
    if isinstance(text, bool):
        raise ValueError(f"expected {DURATION_FORM}, got {text!r}")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"expected {DURATION_FORM}, got a negative number")
        return float(text)
    compact = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(?:\.\d+)?", compact):
        return float(compact)
    parts = _DURATION_RE.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"expected {DURATION_FORM}, got {text!r}")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


def format_duration(seconds: float) -> str:
    """The shortest exact-enough spelling: ``45s``, ``12m``, ``3h05m``, ``2d04h``."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s".replace(".0s", "s")
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h" if hours else f"{days}d"


def parse_size(text: str | int) -> int:
    """Bytes in ``text``: ``1024``, ``500MB`` (10^6), ``2GiB`` (2^30); case-insensitive."""
    if isinstance(text, bool):
        raise ValueError(f"expected {SIZE_FORM}, got {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"expected {SIZE_FORM}, got a negative number")
        return text
    match = _SIZE_RE.fullmatch(text.strip().lower())
    if match is None or match.group(2) not in _SIZE_UNITS:
        raise ValueError(f"expected {SIZE_FORM}, got {text!r}")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def format_size(size: int) -> str:
    """Decimal units with one decimal, as quotas are written: ``512B``, ``1.5kB``, ``16.0GB``."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{int(value)}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1000
    raise AssertionError("unreachable")


class QuotaChange:
    """A quota edit as admins type it: ``+N`` adds, ``-N`` subtracts, ``=N`` or ``N`` sets."""

    __slots__ = ("amount", "op")

    def __init__(self, op: str, amount: int) -> None:
        self.op = op
        self.amount = amount

    def __repr__(self) -> str:
        return f"QuotaChange({self.op}{self.amount})"


def _split_op(text: str) -> tuple[str, str]:
    text = text.strip()
    if text[:1] in ("+", "-", "="):
        return text[0], text[1:].strip()
    return "=", text


def parse_count_change(text: str) -> QuotaChange:
    """``+2``, ``-1``, ``=8`` or ``8`` for a count quota (groups a user may create)."""
    op, rest = _split_op(text)
    if not rest.isdigit():
        raise ValueError(f"expected +N, -N, =N or N with N a whole number, got {text!r}")
    return QuotaChange(op, int(rest))


def parse_size_change(text: str) -> QuotaChange:
    """``+2GB``, ``-500MiB``, ``=16GB`` or ``16GB`` for a storage quota."""
    op, rest = _split_op(text)
    try:
        amount = parse_size(rest)
    except ValueError:
        raise ValueError(
            f"expected +SIZE, -SIZE, =SIZE or SIZE with SIZE like 500MB or 2GiB, got {text!r}"
        ) from None
    return QuotaChange(op, amount)


def apply_quota_change(current: int, change: QuotaChange) -> int:
    """The new quota; never below zero (a ``-`` past zero is refused, not clamped)."""
    if change.op == "+":
        return current + change.amount
    if change.op == "-":
        if change.amount > current:
            raise ValueError(f"cannot subtract {change.amount} from a quota of {current}")
        return current - change.amount
    return change.amount
