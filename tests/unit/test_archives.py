"""Packing task outputs and unpacking them safely: round trips, and every known archive attack."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from mitosis_sdk.archives import ArchiveError, pack_directory, safe_extract

Member = tuple[tarfile.TarInfo, bytes | None]


def regular(name: str, data: bytes = b"data") -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def folder(name: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info, None


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def special(name: str, kind: bytes) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.devmajor, info.devminor = 1, 3
    return info, None


def build(path: Path, *members: Member) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


@pytest.fixture
def dest(tmp_path) -> Path:
    path = tmp_path / "dest"
    path.mkdir()
    return path


ATTACKS = {
    "absolute path": [regular("/etc/evil")],
    "dot-dot at the start": [regular("../evil")],
    "dot-dot inside": [folder("result"), regular("result/../../evil")],
    "member outside the folder": [folder("result"), regular("other/x")],
    "symlink escape": [folder("result"), link("result/l", "../../etc/passwd")],
    "absolute symlink": [folder("result"), link("result/l", "/etc/passwd")],
    "write below a symlink": [folder("result"), link("result/l", "sub"), regular("result/l/x")],
    "symlink through a dot link": [
        folder("result"),
        link("result/d", "."),
        link("result/l", "d/d/../../x"),
    ],
    "write below a symlink of another case": [
        folder("result"),
        link("result/D", "."),
        regular("result/d/x"),
    ],
    "hardlink to an absolute path": [folder("result"), link("result/h", "/etc/passwd", b"1")],
    "hardlink escape": [folder("result"), link("result/h", "../outside", b"1")],
    "hardlink to no member": [folder("result"), link("result/h", "result/missing", b"1")],
    "hardlink to a symlink": [
        folder("result"),
        link("result/s", "x"),
        link("result/h", "result/s", tarfile.LNKTYPE),
    ],
    "character device": [folder("result"), special("result/null", tarfile.CHRTYPE)],
    "block device": [folder("result"), special("result/sda", tarfile.BLKTYPE)],
    "fifo": [folder("result"), special("result/pipe", tarfile.FIFOTYPE)],
    "name twice": [folder("result"), regular("result/a"), regular("result/a", b"other")],
    "top folder is a symlink": [link("result", "/tmp")],
    "top folder is a file": [regular("result")],
    "backslash name": [folder("result"), regular("result\\..\\evil")],
}


@pytest.mark.parametrize("attack", ATTACKS)
def test_attacks_are_refused_and_nothing_is_written(attack, tmp_path, dest):
    """Every unsafe archive raises ArchiveError and leaves the destination empty."""
    archive = build(tmp_path / "evil.tar.gz", regular("result/first-is-fine"), *ATTACKS[attack])
    with pytest.raises(ArchiveError, match="member"):
        safe_extract(archive, dest)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "evil").exists()
    assert not (tmp_path / "outside").exists()


def test_lone_top_symlink_is_refused(tmp_path, dest):
    """An archive whose folder is a symlink would place a link to anywhere in ``dest``."""
    with pytest.raises(ArchiveError, match="top folder must be a directory"):
        safe_extract(build(tmp_path / "a.tar.gz", link("result", "elsewhere")), dest)
    assert list(dest.iterdir()) == []


def test_empty_archive_is_refused(tmp_path, dest):
    """An archive with no members has no folder to unpack."""
    with pytest.raises(ArchiveError, match="empty"):
        safe_extract(build(tmp_path / "empty.tar.gz"), dest)


def test_garbage_is_refused(tmp_path, dest):
    """Bytes that are not a tar.gz raise ArchiveError, not a tarfile or zlib error."""
    archive = tmp_path / "junk.tar.gz"
    archive.write_bytes(os.urandom(512))
    with pytest.raises(ArchiveError, match="cannot unpack"):
        safe_extract(archive, dest)
    assert list(dest.iterdir()) == []


def test_other_top_folder_is_refused(tmp_path, dest):
    """When the caller names the folder, an archive of another one is refused."""
    archive = build(tmp_path / "a.tar.gz", folder("exec-log"), regular("exec-log/x"))
    with pytest.raises(ArchiveError, match="outside the archive's folder 'result/'"):
        safe_extract(archive, dest, top="result")


def test_existing_folder_is_never_merged_into(tmp_path, dest):
    """Unpacking next to an existing folder of the same name refuses and changes nothing."""
    archive = build(tmp_path / "a.tar.gz", folder("result"), regular("result/x"))
    (dest / "result").mkdir()
    (dest / "result" / "mine").write_text("keep")
    with pytest.raises(FileExistsError):
        safe_extract(archive, dest)
    assert [p.name for p in (dest / "result").iterdir()] == ["mine"]
    assert sorted(p.name for p in dest.iterdir()) == ["result"]


def test_inner_links_are_allowed(tmp_path, dest):
    """Symlinks and hardlinks that stay inside the folder unpack as links."""
    archive = build(
        tmp_path / "links.tar.gz",
        folder("result"),
        folder("result/sub"),
        regular("result/sub/data", b"payload"),
        link("result/alias", "sub/data"),
        link("result/sub/up", "../sub/data"),
        link("result/copy", "result/sub/data", tarfile.LNKTYPE),
    )
    top = safe_extract(archive, dest)
    assert top == dest / "result"
    assert os.readlink(top / "alias") == "sub/data"
    assert (top / "sub" / "up").read_bytes() == b"payload"
    assert (top / "copy").read_bytes() == b"payload"
    assert [p.name for p in dest.iterdir()] == ["result"]


@pytest.fixture
def tree(tmp_path) -> Path:
    """A result directory as a task leaves it."""
    root = tmp_path / "out"
    (root / "models" / "empty").mkdir(parents=True)
    (root / "models" / "w.bin").write_bytes(os.urandom(300_000))
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "latest").symlink_to("models/w.bin")
    os.link(root / "models" / "w.bin", root / "hard.bin")
    return root


def test_pack_and_extract_round_trip(tree, tmp_path, dest):
    """A packed directory unpacks to the same files, folders, links and executable bits."""
    packed = pack_directory(tree, tmp_path / "result.tar.gz", "result")
    assert packed.skipped == ()
    assert packed.size == (tmp_path / "result.tar.gz").stat().st_size
    top = safe_extract(tmp_path / "result.tar.gz", dest, top="result")
    assert (top / "models" / "w.bin").read_bytes() == (tree / "models" / "w.bin").read_bytes()
    assert (top / "hard.bin").read_bytes() == (tree / "hard.bin").read_bytes()
    assert (top / "models" / "empty").is_dir()
    assert os.readlink(top / "latest") == "models/w.bin"
    assert os.access(top / "run.sh", os.X_OK)


def test_pack_puts_everything_under_the_top_folder(tree, tmp_path):
    """Every member is the folder itself or inside it, owned by nobody in particular."""
    pack_directory(tree, tmp_path / "a.tar.gz", "exec-log")
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        members = tar.getmembers()
    assert {m.name.split("/")[0] for m in members} == {"exec-log"}
    assert all(m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)


def test_pack_std_log(tmp_path, dest):
    """Captured output packs as std-log/stdout.log."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "stdout.log").write_text("hello\n")
    pack_directory(logs, tmp_path / "std.tar.gz", "std-log")
    top = safe_extract(tmp_path / "std.tar.gz", dest)
    assert (top / "stdout.log").read_text() == "hello\n"
    assert top.name == "std-log"


def test_pack_skips_what_would_be_refused(tree, tmp_path, dest):
    """Escaping links and FIFOs are left out and reported; the archive still unpacks."""
    (tree / "escape").symlink_to("../../etc/passwd")
    (tree / "absolute").symlink_to("/etc/passwd")
    os.mkfifo(tree / "pipe")
    packed = pack_directory(tree, tmp_path / "a.tar.gz", "result")
    assert sorted(s.split(":")[0] for s in packed.skipped) == [
        "result/absolute",
        "result/escape",
        "result/pipe",
    ]
    top = safe_extract(tmp_path / "a.tar.gz", dest)
    assert not (top / "escape").is_symlink()
    assert not (top / "pipe").exists()


def test_pack_refuses_a_symlinked_source(tree, tmp_path):
    """The directory itself must be real, not a link to somewhere else."""
    (tmp_path / "alias").symlink_to(tree)
    with pytest.raises(ValueError, match="not a directory"):
        pack_directory(tmp_path / "alias", tmp_path / "a.tar.gz", "result")


@pytest.mark.parametrize("top", ["", "a/b", "..", "/abs"])
def test_pack_refuses_a_bad_top_folder(tree, tmp_path, top):
    """The top folder is one plain segment."""
    with pytest.raises(ValueError, match=r"empty|segment|relative"):
        pack_directory(tree, tmp_path / "a.tar.gz", top)
