"""Forms for moving attachments: upload a local file, save a file or a folder locally.

Paths are checked here, before any call: the file to upload must exist and be readable; a
save target's directory must exist, and an existing file is replaced only when the user
ticks "Replace". The upload form shows, as the user types, the key the file will get (the
SDK's own rule: a key ending in ``/`` is a folder the file goes into under its name).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from textual.app import ComposeResult
from textual.widgets import Checkbox, Input, Static

from mitosis_sdk.keys import upload_key
from mitosis_tui.screens.forms import FormScreen, Invalid


@dataclass(frozen=True)
class UploadRequest:
    path: Path
    key: str


@dataclass(frozen=True)
class DownloadTarget:
    """Where to save; for a folder, whether files already there are replaced (else kept)."""

    path: Path
    replace: bool = False


def local_path(text: str) -> Path:
    text = text.strip()
    if not text:
        raise Invalid("a path is needed")
    return Path(text).expanduser()


def readable_file(text: str) -> Path:
    path = local_path(text)
    if not path.exists():
        raise Invalid(f"{path} does not exist")
    if not path.is_file():
        raise Invalid(f"{path} is not a file")
    if not os.access(path, os.R_OK):
        raise Invalid(f"{path} is not readable")
    return path


class UploadForm(FormScreen[UploadRequest]):
    """Upload into ``group``; the key starts as the current folder (``prefix``)."""

    def __init__(self, group: str, prefix: str) -> None:
        super().__init__()
        self.TITLE_TEXT = f"Upload a file to {group}"
        self.prefix = prefix

    def fields(self) -> ComposeResult:
        yield from self.field("File", Input(id="upload-path", placeholder="~/data/set1.tar.gz"))
        yield from self.field(
            "Key", Input(self.prefix, id="upload-key", placeholder="the file's name")
        )
        yield Static("", id="upload-preview", classes="note")

    def on_input_changed(self, _event: Input.Changed) -> None:
        preview = self.query_one("#upload-preview", Static)
        try:
            preview.update(f"→ stored as {self.result().key}")
        except Invalid as exc:
            preview.update(f"  {exc}")

    def result(self) -> UploadRequest:
        path = readable_file(self.value("#upload-path"))
        key = self.value("#upload-key").strip() or None
        try:
            return UploadRequest(path=path, key=upload_key(key, path.name))
        except ValueError as exc:
            raise Invalid(str(exc)) from None


class DownloadForm(FormScreen[DownloadTarget]):
    """Where to save ``key`` (a file), or the files below it (``folder``: a directory)."""

    def __init__(self, key: str, default: Path, *, folder: bool) -> None:
        super().__init__()
        what = f"the files in {key}" if folder else key
        self.TITLE_TEXT = f"Save {what}"
        self.key, self.default, self.folder = key, default, folder

    def fields(self) -> ComposeResult:
        label = "Directory" if self.folder else "Save as"
        yield from self.field(label, Input(str(self.default), id="download-path"))
        yield Checkbox("Replace existing files", id="download-replace")

    def result(self) -> DownloadTarget:
        path = local_path(self.value("#download-path"))
        replace = self.query_one("#download-replace", Checkbox).value
        if self.folder:
            if path.exists() and not path.is_dir():
                raise Invalid(f"{path} is a file, not a directory")
            if not path.parent.is_dir():
                raise Invalid(f"{path.parent} does not exist")
            return DownloadTarget(path, replace)
        if path.is_dir():
            path = path / self.key.rpartition("/")[2]
        if not path.parent.is_dir():
            raise Invalid(f"{path.parent} does not exist")
        if path.exists() and not replace:
            raise Invalid(f"{path} exists: tick 'Replace existing files' to overwrite it")
        return DownloadTarget(path, replace)
