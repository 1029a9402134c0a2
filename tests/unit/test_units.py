"""Durations, sizes and quota edits parse the way people type them."""

from __future__ import annotations

import pytest

from mitosis_sdk.units import (
    apply_quota_change,
    format_duration,
    format_size,
    parse_count_change,
    parse_duration,
    parse_size,
    parse_size_change,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("30s", 30),
        ("10m", 600),
        ("2h", 7200),
        ("7d", 604800),
        ("1h30m", 5400),
        ("250ms", 0.25),
        ("1.5h", 5400),
        (" 5 m ", 300),
        ("1w", 604800),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["10x", "", "m", "-5s", "5 s x", "1h-30m", "s10"])
def test_bad_durations_name_the_form(text):
    with pytest.raises(ValueError, match="duration such as 30s"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1024", 1024),
        ("500MB", 500 * 10**6),
        ("2GiB", 2 * 2**30),
        ("16gb", 16 * 10**9),
        ("1.5KiB", 1536),
        ("7B", 7),
    ],
)
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["10XB", "", "GB", "-1GB", "1e9"])
def test_bad_sizes_name_the_form(text):
    with pytest.raises(ValueError, match="size such as 500MB"):
        parse_size(text)


def test_formatting_round_numbers():
    assert format_duration(45) == "45s"
    assert format_duration(3600 + 5 * 60) == "1h05m"
    assert format_duration(2 * 86400 + 4 * 3600) == "2d04h"
    assert format_size(512) == "512B"
    assert format_size(16 * 10**9) == "16.0GB"


def test_quota_changes():
    assert apply_quota_change(8, parse_count_change("+2")) == 10
    assert apply_quota_change(8, parse_count_change("-8")) == 0
    assert apply_quota_change(8, parse_count_change("=3")) == 3
    assert apply_quota_change(8, parse_count_change("5")) == 5
    assert apply_quota_change(10**9, parse_size_change("+1GB")) == 2 * 10**9
    with pytest.raises(ValueError, match="cannot subtract"):
        apply_quota_change(1, parse_count_change("-2"))
    for bad in ("+x", "", "=", "++1", "1.5"):
        with pytest.raises(ValueError, match=r"\+N, -N, =N or N"):
            parse_count_change(bad)
    with pytest.raises(ValueError, match="SIZE like 500MB"):
        parse_size_change("+lots")
