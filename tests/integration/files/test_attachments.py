"""Group attachments through the real app: two-phase uploads, quotas, keys, queries (F3, F4).

Bytes go exactly the production way: presigned URLs from the coordinator, PUT and GET with
the SDK's transfer helpers, to moto's S3 or to the coordinator's own local-store URLs.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from mitosis_sdk import errors
from mitosis_sdk.schemas.files import AttachmentSelection, CompletedPart
from mitosis_server.db.models import utcnow
from mitosis_server.services.uploads import Objects, sweep_expired
from tests.integration.conftest import PART


async def test_round_trip_single_and_multipart(lab, make_file, tmp_path):
    """An empty file, a small one (one PUT) and a large one (parts) come back byte for byte."""
    writer = lab["write"]
    empty = make_file("empty.bin", data=b"")
    small = make_file("small.bin", 1000)
    big = make_file("big.bin", 2 * PART + 7)
    assert (await writer.upload_attachment("lab", empty, "data/empty.bin")).size == 0
    assert (await writer.upload_attachment("lab", small, "data/small.bin")).size == 1000
    info = await writer.upload_attachment("lab", big, "data/big.bin")
    assert info.size == 2 * PART + 7
    sources = {"data/empty.bin": empty, "data/small.bin": small, "data/big.bin": big}
    for key, source in sources.items():
        copy = await lab["read"].download_attachment("lab", key, tmp_path / "copy")
        assert copy.read_bytes() == source.read_bytes()
    assert (await writer.get_group("lab")).storage_used == 1000 + 2 * PART + 7


async def test_key_defaults_to_file_name_and_folders_hold_files(lab, make_file):
    """No key: the file's name; a key ending in '/': the file inside that folder."""
    writer = lab["write"]
    assert (await writer.upload_attachment("lab", make_file("a.txt", 3))).key == "a.txt"
    info = await writer.upload_attachment("lab", make_file("b.txt", 3), "set/one/")
    assert info.key == "set/one/b.txt"
    assert info.content_type == "text/plain"
    assert (await writer.get_attachment("lab", "./set/one/b.txt")).key == "set/one/b.txt"


async def test_quota_exceeded_by_one_byte_is_refused_before_bytes_move(
    lab, admin, make_file, behind
):
    """With 99 bytes left, a 100-byte upload is a 422 at begin: no URL, no reservation."""
    await admin.change_storage_quota("lab", "=99")
    writer = lab["write"]
    with pytest.raises(errors.QuotaExceeded) as caught:
        await writer.begin_attachment_upload("lab", "x.bin", 100)
    assert caught.value.details["quota"] == 99
    assert (await writer.get_group("lab")).storage_used == 0
    assert await behind.uploads() == 0
    info = await writer.upload_attachment("lab", make_file("fits.bin", 99))
    assert info.size == 99
    assert (await writer.get_group("lab")).storage_used == 99


async def test_overwrite_and_delete_adjust_usage_exactly(lab, make_file, tmp_path, behind):
    """Replacing a key charges the new size only; deleting gives it all back."""
    writer = lab["write"]
    await writer.upload_attachment("lab", make_file("v1", 300), "doc")
    await writer.upload_attachment("lab", make_file("other", 50), "other")
    await writer.upload_attachment("lab", make_file("v2", data=b"new version"), "doc")
    assert (await writer.get_group("lab")).storage_used == 11 + 50
    copy = await writer.download_attachment("lab", "doc", tmp_path / "doc")
    assert copy.read_bytes() == b"new version"
    assert behind.objects() == 2  # the old version's object is gone
    await writer.delete_attachment("lab", "doc")
    assert (await writer.get_group("lab")).storage_used == 50
    with pytest.raises(errors.NotFound):
        await writer.get_attachment("lab", "doc")
    assert behind.objects() == 1


BAD_KEYS = {
    "dotdot": "../etc/passwd",
    "dotdot-inside": "a/../../b",
    "leading-slash": "/abs/key",
    "empty-segment": "a//b",
    "nul": "nul\x00byte",
    "1025-bytes": "k" * 1025,
    "1026-bytes-utf8": "é" * 513,
    "backslash": "a\\b",
}


async def test_bad_keys_are_400(lab):
    """Every key rule is a 400 naming the key, at upload and on reads; nothing is reserved."""
    writer = lab["write"]
    refused = {}
    for name, key in BAD_KEYS.items():
        reply = await writer._http.post(
            "/api/groups/lab/attachments/uploads",
            json={"key": key, "size": 1},
            headers=writer._headers(),
        )
        read = await writer._http.get(
            "/api/groups/lab/attachments/info", params={"key": key}, headers=writer._headers()
        )
        refused[name] = (reply.status_code, "key" in reply.json()["message"], read.status_code)
    assert refused == {name: (400, True, 400) for name in BAD_KEYS}
    assert (await writer.get_group("lab")).storage_used == 0


async def test_more_bytes_than_declared_leave_nothing(lab, behind):
    """A PUT longer than declared is refused by the store; completing then fails; aborting
    gives the reservation back and no object remains."""
    writer = lab["write"]
    ticket = await writer.begin_attachment_upload("lab", "capped.bin", 10)
    assert (await writer.get_group("lab")).storage_used == 10
    reply = await writer._transfers.put(ticket.upload.url, content=b"x" * 11)
    assert reply.status_code in (400, 403, 413)
    with pytest.raises(errors.BadRequest, match="nothing has been uploaded"):
        await writer.complete_attachment_upload("lab", ticket.id)
    await writer.abort_attachment_upload("lab", ticket.id)
    assert (await writer.get_group("lab")).storage_used == 0
    assert await behind.uploads() == 0
    assert behind.objects() == 0
    with pytest.raises(errors.NotFound):
        await writer.get_attachment("lab", "capped.bin")


async def test_multipart_missing_a_part_is_refused_and_discarded(lab, make_file, behind):
    """Completing with a part left out would store a shorter file: refused, not recorded."""
    writer = lab["write"]
    path = make_file("big.bin", PART + 10)
    ticket = await writer.begin_attachment_upload("lab", "big.bin", PART + 10)
    parts = []
    for part in ticket.upload.multipart.parts:
        with path.open("rb") as file:
            file.seek(part.offset)
            data = file.read(part.size)
        reply = await writer._transfers.put(part.url, content=data, headers=part.headers)
        parts.append(CompletedPart(number=part.number, etag=reply.headers["etag"]))
    with pytest.raises(errors.BadRequest, match="not the"):
        await writer.complete_attachment_upload("lab", ticket.id, parts[:1])
    with pytest.raises(errors.NotFound):
        await writer.get_attachment("lab", "big.bin")
    await writer.abort_attachment_upload("lab", ticket.id)
    assert (await writer.get_group("lab")).storage_used == 0
    assert behind.objects() == 0


async def test_concurrent_uploads_never_overshoot_the_quota(lab, admin):
    """Five uploads of 40 bytes race for 100 bytes: exactly two get a reservation."""
    await admin.change_storage_quota("lab", "=100")
    writer = lab["write"]
    results = await asyncio.gather(
        *(writer.begin_attachment_upload("lab", f"f{i}", 40) for i in range(5)),
        return_exceptions=True,
    )
    granted = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, errors.QuotaExceeded)]
    assert (len(granted), len(refused)) == (2, 3)
    assert (await writer.get_group("lab")).storage_used == 80


async def test_expired_uploads_give_their_reservation_back(app, lab, behind):
    """An upload neither completed nor aborted is swept after complete_by."""
    writer = lab["write"]
    ticket = await writer.begin_attachment_upload("lab", "late.bin", 1234)
    coordinator = app.state.coordinator
    objects = Objects(coordinator.store, coordinator.settings.url_lifetime)
    assert await sweep_expired(coordinator.sessions, objects) == 0
    later = utcnow() + timedelta(seconds=2 * coordinator.settings.url_lifetime + 1)
    assert await sweep_expired(coordinator.sessions, objects, later) == 1
    assert (await writer.get_group("lab")).storage_used == 0
    assert await behind.uploads() == 0
    with pytest.raises(errors.NotFound):
        await writer.complete_attachment_upload("lab", ticket.id)


async def test_uploads_belong_to_their_uploader(lab):
    """Another writer cannot complete or abort someone's upload (404)."""
    ticket = await lab["write"].begin_attachment_upload("lab", "mine", 1)
    with pytest.raises(errors.NotFound):
        await lab["group-admin"].complete_attachment_upload("lab", ticket.id)
    with pytest.raises(errors.NotFound):
        await lab["group-admin"].abort_attachment_upload("lab", ticket.id)


async def test_query_pages_filters_and_counts(lab, make_file):
    """Key order, limit/offset, a total; prefix and substring filters are case-sensitive."""
    writer = lab["write"]
    for key in ("data/a.csv", "data/B.csv", "data/c.txt", "logs/a.log", "readme"):
        await writer.upload_attachment("lab", make_file("f", 1), key)
    page = await writer.query_attachments("lab", limit=2, offset=1)
    assert [a.key for a in page.attachments] == ["data/a.csv", "data/c.txt"]
    assert page.total == 5
    page = await writer.query_attachments("lab", prefix="data/")
    assert [a.key for a in page.attachments] == ["data/B.csv", "data/a.csv", "data/c.txt"]
    page = await lab["read"].query_attachments("lab", contains="a.")
    assert [a.key for a in page.attachments] == ["data/a.csv", "logs/a.log"]
    assert (await writer.query_attachments("lab", contains="b.csv")).total == 0
    assert (await writer.query_attachments("lab", contains="%")).total == 0


async def test_links_and_delete_by_selection(lab, make_file, tmp_path):
    """Download URLs for a filter or a key list; delete by filter frees exactly its sizes."""
    writer = lab["write"]
    for key, size in (("x/1", 10), ("x/2", 20), ("y/3", 40)):
        await writer.upload_attachment("lab", make_file("f", size), key)
    links = await lab["read"].attachment_links("lab", AttachmentSelection(prefix="x/"))
    assert [(link.key, link.size) for link in links.links] == [("x/1", 10), ("x/2", 20)]
    assert await writer.download_url(links.links[0].url, tmp_path / "one") == 10
    with pytest.raises(errors.NotFound, match="x/9"):
        await writer.attachment_links("lab", AttachmentSelection(keys=["x/1", "x/9"]))
    reply = await writer.delete_attachments("lab", AttachmentSelection(contains="x/"))
    assert (reply.deleted, reply.freed) == (2, 30)
    assert (await writer.get_group("lab")).storage_used == 40
    reply = await writer.delete_attachments("lab", AttachmentSelection(all=True))
    assert (reply.deleted, reply.freed) == (1, 40)
    assert (await writer.get_group("lab")).storage_used == 0


async def test_a_folder_lists_sub_folders_first_then_files(lab, make_file):
    """Sub-folders sum the files below them; files carry their metadata; pages have a total."""
    writer = lab["write"]
    for key, size in (
        ("data/raw/a.bin", 10),
        ("data/raw/deep/b.bin", 20),
        ("data/c.txt", 3),
        ("data/logs/d.log", 4),
        ("readme", 1),
    ):
        await writer.upload_attachment("lab", make_file("f", size), key)
    top = await lab["read"].list_attachment_folder("lab")
    assert [(e.name, e.folder, e.files, e.size) for e in top.entries] == [
        ("data/", True, 4, 37),
        ("readme", False, 1, 1),
    ]
    assert (top.prefix, top.total) == ("", 2)
    data = await writer.list_attachment_folder("lab", "data/")
    assert [(e.name, e.key, e.files) for e in data.entries] == [
        ("logs/", "data/logs/", 1),
        ("raw/", "data/raw/", 2),
        ("c.txt", "data/c.txt", 1),
    ]
    assert data.entries[0].attachment is None
    assert data.entries[2].attachment.creator == "member_write"
    assert data.entries[2].updated_at == data.entries[2].attachment.updated_at
    page = await writer.list_attachment_folder("lab", "data/", limit=1, offset=1)
    assert ([e.name for e in page.entries], page.total) == (["raw/"], 3)
    assert (await writer.list_attachment_folder("lab", "nothing/")).total == 0


async def test_a_folder_prefix_must_name_a_folder_the_caller_may_read(lab):
    """A file name, '..' or a stranger's group: 400 naming the rule, or 404."""
    for prefix in ("data", "../x/", "a//b/"):
        with pytest.raises(errors.BadRequest, match="prefix"):
            await lab["read"].list_attachment_folder("lab", prefix)
    with pytest.raises(errors.NotFound):
        await lab["non-member"].list_attachment_folder("lab")


async def test_bytes_go_to_the_store_not_through_the_coordinator_api(
    lab, make_file, object_backend, settings
):
    """Upload and download URLs name S3 itself, or the local store's own signed /objects/
    path — never an API route that would carry the bytes (F1)."""
    writer = lab["write"]
    await writer.upload_attachment("lab", make_file("f", 10), "f")
    ticket = await writer.begin_attachment_upload("lab", "g", 10)
    link = await writer.attachment_link("lab", "f")
    store = settings.s3_url if object_backend == "s3" else f"{settings.public_url}/objects/"
    assert ticket.upload.url.startswith(store)
    assert link.url.startswith(store)
    await writer.abort_attachment_upload("lab", ticket.id)
