"""`mitosis-tui --batch groups attachments …` and `tasks artifacts …`, end to end in-process:
the commands, the SDK transfer helpers, the app and its local object store."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from mitosis_sdk.archives import pack_directory
from mitosis_sdk.auth import CredentialCache
from mitosis_tui.commands.runner import run_batch
from mitosis_tui.config import ClientSettings
from tests.integration.conftest import URL


@pytest.fixture
def batch(transport, tmp_path):
    """``await batch("whoami", user=...)`` -> (exit code, stdout, stderr)."""
    cache = CredentialCache(tmp_path / "credentials.json")

    async def _run(*argv: str, user=None, as_json=False):
        out, err = io.StringIO(), io.StringIO()
        settings = ClientSettings(coordinator=URL, user=user)
        code = await run_batch(
            settings,
            list(argv),
            as_json=as_json,
            stdout=out,
            stderr=err,
            cache=cache,
            transport=transport,
        )
        return code, out.getvalue(), err.getvalue()

    return _run


@pytest.fixture
async def alice(batch, admin):
    """alice (logged in for the batch commands) admins group lab; bob reads it."""
    await admin.create_user("alice", "pw")
    await admin.create_user("bob", "pw")
    assert (await batch("login", "alice", "pw"))[0] == 0
    assert (await batch("groups", "create", "lab"))[0] == 0
    assert (await batch("groups", "update-user", "lab", "bob:read"))[0] == 0
    return batch


def _json(result):
    code, out, err = result
    assert code == 0, err
    return json.loads(out)


async def test_attachment_commands(alice, tmp_path):
    """upload (default key, folder key, personal group), get, query, download, download-many
    into a folder, delete, delete-many; usage follows in `groups get`."""
    batch = alice
    data = tmp_path / "set1.csv"
    data.write_bytes(b"x" * 1000)
    (tmp_path / "notes.txt").write_text("hello")
    info = _json(await batch("groups", "attachments", "upload", str(data), "--json"))
    assert (info["group"], info["key"]) == ("alice", "set1.csv")
    await batch("groups", "attachments", "upload", str(data), "data/", "-g", "lab")
    await batch("groups", "attachments", "upload", str(tmp_path / "notes.txt"), "-g", "lab")
    info = _json(
        await batch("groups", "attachments", "get", "data/set1.csv", "-g", "lab", "--json")
    )
    assert info["size"] == 1000
    page = _json(await batch("groups", "attachments", "query", "-g", "lab", "-k", "csv", "--json"))
    assert ([a["key"] for a in page["attachments"]], page["total"]) == (["data/set1.csv"], 1)
    code, out, _ = await batch("groups", "attachments", "query", "-g", "lab")
    assert code == 0
    assert out.splitlines()[0].split() == ["KEY", "SIZE", "TYPE", "UPDATED", "BY"]
    target = tmp_path / "one.csv"
    code, _, err = await batch(
        "groups", "attachments", "download", "data/set1.csv", "-g", "lab", "-o", str(target)
    )
    assert code == 0, err
    assert target.read_bytes() == b"x" * 1000
    folder = tmp_path / "all"
    saved = _json(
        await batch(
            "groups", "attachments", "download-many", "-g", "lab", "-o", str(folder), "--json"
        )
    )
    assert sorted(item["name"] for item in saved["saved"]) == ["data/set1.csv", "notes.txt"]
    assert (folder / "data" / "set1.csv").read_bytes() == b"x" * 1000
    assert (folder / "notes.txt").read_text() == "hello"
    group = _json(await batch("groups", "get", "lab", "--json"))
    assert group["storage_used"] == 1005
    assert (await batch("groups", "attachments", "delete", "notes.txt", "-g", "lab"))[0] == 0
    reply = _json(await batch("groups", "attachments", "delete-many", "-g", "lab", "--json"))
    assert reply == {"deleted": 1, "freed": 1000}
    assert _json(await batch("groups", "get", "lab", "--json"))["storage_used"] == 0
    assert _json(await batch("groups", "retention", "lab", "30", "--json"))["artifact_days"] == 30
    code, out, _ = await batch("groups", "retention", "lab")
    assert (code, out.split()[-2:]) == (0, ["30", "days"])
    assert (
        _json(await batch("groups", "retention", "lab", "off", "--json"))["artifact_days"] is None
    )


async def test_attachment_command_exit_codes(alice, admin, tmp_path):
    """2 bad key or missing file, 4 missing key or forbidden, 5 quota exceeded."""
    batch = alice
    path = tmp_path / "f.bin"
    path.write_bytes(b"1234")
    assert (await batch("groups", "attachments", "upload", str(path), "../x", "-g", "lab"))[0] == 2
    assert (await batch("groups", "attachments", "upload", str(tmp_path / "nope"), "-g", "lab"))[
        0
    ] == 2
    assert (await batch("groups", "attachments", "get", "missing", "-g", "lab"))[0] == 4
    await admin.change_storage_quota("lab", "=3")
    code, _, err = await batch("groups", "attachments", "upload", str(path), "-g", "lab")
    assert code == 5
    assert "quota" in err
    await admin.change_storage_quota("lab", "=1KB")
    assert (await batch("groups", "attachments", "upload", str(path), "-g", "lab"))[0] == 0
    assert (await batch("login", "bob", "pw"))[0] == 0
    assert (await batch("groups", "attachments", "delete", "f.bin", "-g", "lab"))[0] == 4
    assert (await batch("groups", "attachments", "get", "f.bin", "-g", "lab"))[0] == 0


async def test_artifact_commands(alice, tmp_path):
    """upload as a user, list, download (file and --extract), download-many into a folder,
    delete-many by filter, delete."""
    batch = alice
    uuids = []
    for _ in range(2):
        code, out, err = await batch("tasks", "submit", "-g", "lab", "--", "true")
        assert code == 0, err
        uuids.append(out.strip())
    source = tmp_path / "src"
    source.mkdir()
    (source / "answer.txt").write_text("42")
    archive = tmp_path / "result.tar.gz"
    size = pack_directory(source, archive, "result").size
    for uuid in uuids:
        code, _, err = await batch("tasks", "artifacts", "upload", str(archive), uuid, "result")
        assert code == 0, err
    listed = _json(await batch("tasks", "artifacts", "list", uuids[0], "--json"))
    assert [(a["type"], a["size"]) for a in listed] == [("result", size)]
    out_dir = tmp_path / "one"
    out_dir.mkdir()
    assert (await batch("tasks", "artifacts", "download", uuids[0], "result", "-o", str(out_dir)))[
        0
    ] == 0
    assert (out_dir / f"{uuids[0]}-result.tar.gz").stat().st_size == size
    code, _, err = await batch(
        "tasks", "artifacts", "download", uuids[0], "result", "--extract", "-o", str(out_dir)
    )
    assert code == 0, err
    assert (out_dir / "result" / "answer.txt").read_text() == "42"
    many = tmp_path / "many"
    saved = _json(
        await batch(
            "tasks", "artifacts", "download-many", "result", "-g", "lab", "-o", str(many), "--json"
        )
    )
    assert sorted(item["name"] for item in saved["saved"]) == sorted(f"{u}-result" for u in uuids)
    assert all((many / f"{u}-result.tar.gz").is_file() for u in uuids)
    code, _, err = await batch(
        "tasks",
        "artifacts",
        "download-many",
        "result",
        "--uuids",
        uuids[1],
        "--extract",
        "-o",
        str(tmp_path / "x"),
    )
    assert code == 0, err
    assert (tmp_path / "x" / uuids[1] / "result" / "answer.txt").read_text() == "42"
    reply = _json(
        await batch("tasks", "artifacts", "delete-many", "result", "--uuids", uuids[1], "--json")
    )
    assert reply == {"deleted": 1, "freed": size}
    assert (await batch("tasks", "artifacts", "delete", uuids[0], "result"))[0] == 0
    assert (await batch("tasks", "artifacts", "delete", uuids[0], "result"))[0] == 4
    assert _json(await batch("groups", "get", "lab", "--json"))["storage_used"] == 0


def _unsafe_archive(path):
    """A result archive with one member that would land outside its folder."""
    with tarfile.open(path, "w:gz") as tar:
        for name in ("result/fine.txt", "result/../../escaped.txt"):
            member = tarfile.TarInfo(name)
            member.size = 2
            tar.addfile(member, io.BytesIO(b"hi"))
    return path


async def test_an_unsafe_artifact_is_refused_whole_when_unpacked(alice, tmp_path):
    """--extract of an archive with a member escaping its folder unpacks nothing (not even
    the safe members), exits 1 saying so, and keeps the archive where it says it is."""
    batch = alice
    code, out, _ = await batch("tasks", "submit", "-g", "lab", "--", "true")
    task = out.strip()
    archive = _unsafe_archive(tmp_path / "evil.tar.gz")
    assert (await batch("tasks", "artifacts", "upload", str(archive), task, "result"))[0] == 0
    target = tmp_path / "deep" / "er" / "out"
    for argv in (
        ["download", task, "result", "--extract", "-o", str(target)],
        ["download-many", "result", "--uuids", task, "--extract", "-o", str(target / "many")],
    ):
        code, _, err = await batch("tasks", "artifacts", *argv)
        assert (code, "not unpacked" in err) == (1, True), err
        kept = err.split(" was saved")[0].split()[-1]
        assert Path(kept).read_bytes() == archive.read_bytes()
    assert not (target / "result").exists()
    assert not (target / "many" / task / "result").exists()
    assert [p.name for p in tmp_path.rglob("escaped.txt")] == []
