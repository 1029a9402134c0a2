"""Attachment keys and resource paths: one set of rules, checked the same on every side.

A key is a path-like name such as ``data/set1.tar.gz``; a key ending in ``/`` names a folder
(``data/``), into which an upload puts the file under its own name. The same rules, without
the folder form, keep a task's resource paths inside ``MITO_RESOURCE_DIR``. The client checks
them before it uploads, the coordinator again at its edge, the worker before it writes a file:
a key that passes here can never climb out of a directory or bucket prefix on any of them.

Normalising only drops ``.`` segments and composes Unicode (NFC), so two spellings of one name
cannot become two objects; everything else that could be ambiguous is refused, never guessed.
"""

from __future__ import annotations

import unicodedata

__all__ = ["MAX_KEY_BYTES", "is_folder", "normalize_key", "safe_relative_path", "upload_key"]

MAX_KEY_BYTES = 1024


def _check(text: str, what: str, *, folder_allowed: bool) -> str:
    """The normalised form of ``text``, or ValueError naming the rule it breaks."""
    if not isinstance(text, str):
        raise ValueError(f"{what} must be text, got {type(text).__name__}")
    if not text:
        raise ValueError(f"{what} must not be empty")
    if any(unicodedata.category(char) == "Cc" for char in text):
        raise ValueError(f"{what} must not contain NUL or other control characters")
    if "\\" in text:
        raise ValueError(f"{what} must use '/' between segments, not backslashes")
    if text.startswith("/"):
        raise ValueError(f"{what} must be relative: no leading '/'")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} must be valid Unicode text") from None
    folder = text.endswith("/")
    if folder and not folder_allowed:
        raise ValueError(f"{what} must name a file: no trailing '/'")
    segments = unicodedata.normalize("NFC", text.removesuffix("/")).split("/")
    if "" in segments:
        raise ValueError(f"{what} must not contain empty segments ('//')")
    if ".." in segments:
        raise ValueError(f"{what} must not contain '..' segments")
    kept = [segment for segment in segments if segment != "."]
    if not kept:
        raise ValueError(f"{what} must name something besides '.'")
    normal = "/".join(kept) + ("/" if folder else "")
    if len(normal.encode("utf-8")) > MAX_KEY_BYTES:
        raise ValueError(f"{what} must be at most {MAX_KEY_BYTES} bytes in UTF-8")
    return normal


def normalize_key(key: str) -> str:
    """The canonical form of an attachment key, or ValueError naming the rule it breaks.

    Refused: empty keys, a leading ``/``, empty (``//``) or ``..`` segments, backslashes, NUL
    and other control characters, and more than 1024 bytes of UTF-8. A trailing ``/`` is kept:
    it marks a folder.
    """
    return _check(key, "key", folder_allowed=True)


def is_folder(key: str) -> bool:
    """True for a folder key (``data/``): uploads go inside it, under the file's name."""
    return key.endswith("/")


def upload_key(key: str | None, filename: str) -> str:
    """The key a file is stored under: ``key``, or ``key + filename`` for a folder key.

    Without a key the file's own name is used, so ``upload x.tar.gz`` stores ``x.tar.gz``;
    ``filename`` is a bare name (``Path(local).name``), never a path.
    """
    name = safe_relative_path(filename)
    if "/" in name:
        raise ValueError("file name must be one segment: no '/'")
    if key is None:
        return name
    key = normalize_key(key)
    return normalize_key(key + name) if is_folder(key) else key


def safe_relative_path(text: str) -> str:
    """``text`` as a relative file path that stays inside whatever directory it is joined to.

    The key rules, and no trailing ``/``: the result names a file. Used for the local paths of
    task resources inside ``MITO_RESOURCE_DIR`` and for archive members.
    """
    return _check(text, "path", folder_allowed=False)
