"""Attachment keys and resource paths: what is accepted, how it is normalised, what is refused."""

from __future__ import annotations

import pytest

from mitosis_sdk.keys import (
    MAX_KEY_BYTES,
    is_folder,
    normalize_key,
    safe_relative_path,
    upload_key,
)


@pytest.mark.parametrize(
    ("key", "normal"),
    [
        ("data/set1.tar.gz", "data/set1.tar.gz"),
        ("x", "x"),
        ("data/", "data/"),
        ("./data/./x", "data/x"),
        ("a b/ü.txt", "a b/ü.txt"),
        ("caf\u0065\u0301", "caf\u00e9"),  # decomposed é is composed (NFC)
        ("...", "..."),
        ("a/.hidden", "a/.hidden"),
    ],
)
def test_good_keys_normalise(key, normal):
    """Valid keys come back canonical: '.' segments dropped, Unicode composed."""
    assert normalize_key(key) == normal


@pytest.mark.parametrize(
    ("key", "rule"),
    [
        ("", "must not be empty"),
        ("/data/x", "no leading '/'"),
        ("/", "no leading '/'"),
        ("data//x", "empty segments"),
        ("data//", "empty segments"),
        ("../x", "'..' segments"),
        ("data/../x", "'..' segments"),
        ("data/..", "'..' segments"),
        ("data\\x", "backslashes"),
        ("data/x\x00", "control characters"),
        ("data/\nx", "control characters"),
        ("data/\x7f", "control characters"),
        ("data/\x85", "control characters"),
        ("bad\udc80", "valid Unicode"),
        (".", "besides '.'"),
        ("./", "besides '.'"),
        ("a" * (MAX_KEY_BYTES + 1), "at most 1024 bytes"),
        ("é" * (MAX_KEY_BYTES // 2 + 1), "at most 1024 bytes"),
    ],
)
def test_bad_keys_name_the_rule(key, rule):
    """Every refused key raises ValueError whose message names the rule it broke."""
    with pytest.raises(ValueError, match=r"^key ") as caught:
        normalize_key(key)
    assert rule in str(caught.value)


def test_limit_is_inclusive():
    """A key of exactly 1024 UTF-8 bytes is allowed."""
    assert normalize_key("a" * MAX_KEY_BYTES) == "a" * MAX_KEY_BYTES


def test_non_text_is_refused():
    """Only strings are keys."""
    with pytest.raises(ValueError, match="must be text"):
        normalize_key(b"data")  # type: ignore[arg-type]


def test_folder_keys():
    """A trailing '/' marks a folder."""
    assert is_folder("data/")
    assert not is_folder("data")


@pytest.mark.parametrize(
    ("key", "filename", "result"),
    [
        (None, "x.tar.gz", "x.tar.gz"),
        ("data/", "x.tar.gz", "data/x.tar.gz"),
        ("data/y.tar.gz", "x.tar.gz", "data/y.tar.gz"),
    ],
)
def test_upload_key(key, filename, result):
    """No key: the file's name; a folder key: the file inside it; a file key: itself."""
    assert upload_key(key, filename) == result


@pytest.mark.parametrize("filename", ["dir/x", "/abs/x", ".."])
def test_upload_key_wants_a_bare_file_name(filename):
    """The file name is one segment, never a path."""
    with pytest.raises(ValueError, match=r"path|file name"):
        upload_key(None, filename)


def test_safe_relative_path_accepts_nested_files():
    """Resource paths may nest and are normalised like keys."""
    assert safe_relative_path("./in/data.tar.gz") == "in/data.tar.gz"


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("in/", "no trailing '/'"),
        ("../escape", "'..' segments"),
        ("/etc/passwd", "no leading '/'"),
        ("a//b", "empty segments"),
        ("a\\b", "backslashes"),
        ("a\x00b", "control characters"),
        ("", "must not be empty"),
    ],
)
def test_safe_relative_path_refuses(path, rule):
    """Resource paths follow the key rules and must name a file."""
    with pytest.raises(ValueError, match=r"^path ") as caught:
        safe_relative_path(path)
    assert rule in str(caught.value)
