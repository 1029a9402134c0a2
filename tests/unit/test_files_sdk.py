"""The SDK's file pieces without a coordinator: wire rules, resource paths, transfer checks."""

from __future__ import annotations

import httpx
import msgspec
import pytest

from mitosis_sdk.client.files import path_inside
from mitosis_sdk.schemas import Resource, TaskSpec
from mitosis_sdk.schemas.files import AttachmentSelection, AttachmentUploadBegin, Upload
from mitosis_sdk.transfers import TransferError, get_file, put_file


def test_upload_keys_are_normalised_on_the_wire():
    """'./a//' spellings never reach the coordinator: '.' segments go, NFC composes."""
    body = msgspec.json.decode(
        b'{"key": "./data/./e\\u0301.csv", "size": 1}', type=AttachmentUploadBegin
    )
    assert body.key == "data/é.csv"


@pytest.mark.parametrize("key", ["../x", "/x", "a//b", "a\x00b", "x" * 1025, "folder/"])
def test_bad_upload_keys_fail_decoding(key):
    """Each key rule (and a folder key, which names no file) is a validation error."""
    raw = msgspec.json.encode({"key": key, "size": 1})
    with pytest.raises(msgspec.ValidationError, match="key"):
        msgspec.json.decode(raw, type=AttachmentUploadBegin)


def test_a_selection_is_exactly_one_kind():
    """Keys, a filter or all: never none, never two at once."""
    with pytest.raises(ValueError, match="exactly one"):
        AttachmentSelection()
    with pytest.raises(ValueError, match="exactly one"):
        AttachmentSelection(keys=["a"], all=True)
    assert AttachmentSelection(prefix="./data/").prefix == "data/"


@pytest.mark.parametrize("path", ["../escape", "/etc/passwd", "a/../../b", "a//b", ""])
def test_resource_paths_that_escape_are_refused_at_submit(path):
    """A task spec whose resource would land outside MITO_RESOURCE_DIR is invalid."""
    with pytest.raises(ValueError, match="path"):
        TaskSpec(command=["true"], resources=[Resource(attachment="k", path=path)])


def test_resource_targets_stay_inside_even_through_symlinks(tmp_path):
    """The worker-side check also refuses a path leading out through an existing symlink."""
    root = tmp_path / "resources"
    root.mkdir()
    (root / "out").symlink_to(tmp_path)
    (root / "in").symlink_to(root / "sub", target_is_directory=True)
    assert path_inside(root, "a/b.txt") == root.resolve() / "a" / "b.txt"
    assert path_inside(root, "in/x") == root.resolve() / "in" / "x"
    for bad in ("out/x", "../x", "/abs"):
        with pytest.raises(TransferError):
            path_inside(root, bad)


async def test_a_file_that_differs_from_its_declared_size_is_not_sent(tmp_path):
    """put_file checks the local size against the ticket before the first byte."""
    sent = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    path = tmp_path / "f"
    path.write_bytes(b"12345")
    upload = Upload(expires_at=0, url="http://store.test/k", headers={"Content-Length": "4"})
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        with pytest.raises(TransferError, match="5 bytes"):
            await put_file(http, upload, path)
    assert sent == []


async def test_downloads_are_all_or_nothing(tmp_path):
    """A body shorter than announced leaves no file (and no scratch file) behind."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"abc")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        with pytest.raises(TransferError, match="3 of 10"):
            await get_file(http, "http://store.test/k", tmp_path / "out", size=10)
        assert list(tmp_path.iterdir()) == []
        assert await get_file(http, "http://store.test/k", tmp_path / "out", size=3) == 3
    assert (tmp_path / "out").read_bytes() == b"abc"


async def test_refused_uploads_are_not_retried_but_server_errors_are(tmp_path, monkeypatch):
    """4xx (expired URL, wrong size) is final; 5xx and dropped connections are retried."""
    monkeypatch.setattr("mitosis_sdk.transfers.BACKOFF", 0.0)
    answers = [503, 200]
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        calls.append(request.headers.get("content-length"))
        status = answers.pop(0) if answers else 403
        return httpx.Response(status, headers={"ETag": '"e"'})

    path = tmp_path / "f"
    path.write_bytes(b"1234")
    upload = Upload(expires_at=0, url="http://store.test/k", headers={"Content-Length": "4"})
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        assert await put_file(http, upload, path) == []
        assert calls == ["4", "4"]
        with pytest.raises(TransferError, match="403"):
            await put_file(http, upload, path)
    assert len(calls) == 3
