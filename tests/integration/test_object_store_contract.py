"""One contract for every object store, driven through presigned URLs with plain httpx.

Each test runs on S3 and on the local directory, and moves bytes exactly as workers and clients
will: PUT to the URL with the headers it came with, part by part for large objects, then GET.

* S3 is moto's real HTTP server on a loopback port, behind ``SigV4Gate``, which checks
  presigned URLs as AWS, MinIO and Ceph do (``tests/integration/s3gate.py``; the session
  fixtures ``moto_url`` and ``s3_clock`` are in ``tests/integration/conftest.py``).
* The local store's URLs are served by its objects router in a minimal Litestar app, called
  in-process through ``httpx.ASGITransport``.

The end of the file has what only the local backend's HTTP side can be asked.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import boto3
import httpx
import pytest
from litestar import Litestar

from mitosis_server.api.errors import EXCEPTION_HANDLERS
from mitosis_server.api.objects import create_router
from mitosis_server.storage.base import (
    MIN_PART_SIZE,
    BucketKind,
    CompletedPart,
    ObjectStore,
    Upload,
    UploadIncomplete,
)
from mitosis_server.storage.local import LocalStore, load_secret
from mitosis_server.storage.s3 import S3Store
from tests.integration.s3gate import ACCESS_KEY, REGION, SECRET_KEY, Clock

pytestmark = pytest.mark.timeout(30)

PART = MIN_PART_SIZE  # the smallest part S3 accepts; the threshold sits just above one part
ART, ATT = BucketKind.ARTIFACTS, BucketKind.ATTACHMENTS


@dataclass
class Backend:
    """A store under test, the HTTP client its URLs are used with, and a look behind it."""

    store: ObjectStore
    http: httpx.AsyncClient
    clock: Clock
    bucket_exists: Callable[[BucketKind], bool]
    pending_uploads: Callable[[], set[str]]

    def advance(self, seconds: float) -> None:
        self.clock.offset += seconds


def _bucket_names() -> dict[BucketKind, str]:
    tag = uuid.uuid4().hex[:12]
    return {ART: f"art-{tag}", ATT: f"att-{tag}"}


def _s3_store(moto_url: str, buckets: dict[BucketKind, str], **options) -> S3Store:
    return S3Store(
        endpoint_url=moto_url,
        region=REGION,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        buckets=buckets,
        timeout=5,
        multipart_threshold=PART + 1,
        part_size=PART,
        **options,
    )


def _s3_inspectors(moto_url: str, buckets: dict[BucketKind, str]):
    """Whether a bucket exists and which multipart uploads are open, asked of S3 directly."""
    client = boto3.client(
        "s3",
        endpoint_url=moto_url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )

    def exists(kind: BucketKind) -> bool:
        names = {b["Name"] for b in client.list_buckets()["Buckets"]}
        return buckets[kind] in names

    def pending() -> set[str]:
        uploads = client.list_multipart_uploads(Bucket=buckets[ATT]).get("Uploads", [])
        return {upload["UploadId"] for upload in uploads}

    return exists, pending


def _local_inspectors(root: Path):
    def exists(kind: BucketKind) -> bool:
        return (root / kind.value).is_dir()

    def pending() -> set[str]:
        return {path.name for path in (root / ".uploads").iterdir()}

    return exists, pending


def _local_store(root: Path, clock: Clock) -> LocalStore:
    return LocalStore(
        root,
        "http://coordinator.test",
        load_secret(root.parent / "objects.key"),
        multipart_threshold=PART + 1,
        part_size=PART,
        clock=clock,
    )


@pytest.fixture(params=["s3", "local"])
async def backend(request, tmp_path) -> AsyncIterator[Backend]:
    if request.param == "s3":
        moto_url = request.getfixturevalue("moto_url")
        clock = request.getfixturevalue("s3_clock")
        buckets = _bucket_names()
        store = _s3_store(moto_url, buckets)
        http = httpx.AsyncClient(timeout=10)
        inspectors = _s3_inspectors(moto_url, buckets)
    else:
        clock = Clock()
        store = _local_store(tmp_path / "objects", clock)
        app = Litestar([create_router(store)], exception_handlers=EXCEPTION_HANDLERS)
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app), timeout=10)
        inspectors = _local_inspectors(tmp_path / "objects")
    start = clock.offset
    async with store, http:
        await asyncio.wait_for(store.ensure_buckets(), 10)
        yield Backend(store, http, clock, *inspectors)
    clock.offset = start


async def send(http: httpx.AsyncClient, upload: Upload, data: bytes) -> list[CompletedPart]:
    """Upload ``data`` as a worker does; returns the parts to complete (none for one PUT)."""
    if upload.multipart is None:
        reply = await http.request(upload.method, upload.url, content=data, headers=upload.headers)
        reply.raise_for_status()
        return []
    parts = []
    for part in upload.multipart.parts:
        chunk = data[part.offset : part.offset + part.size]
        reply = await http.request(upload.method, part.url, content=chunk, headers=part.headers)
        reply.raise_for_status()
        parts.append(CompletedPart(number=part.number, etag=reply.headers["ETag"]))
    return parts


async def put(backend: Backend, key: str, data: bytes, bucket: BucketKind = ATT) -> None:
    upload = await backend.store.presign_upload(bucket, key, len(data), 60)
    await send(backend.http, upload, data)


async def fetch(backend: Backend, key: str, bucket: BucketKind = ATT) -> httpx.Response:
    url = await backend.store.presign_download(bucket, key, 60)
    return await backend.http.get(url)


def swap_key(url: str, old: str, new: str) -> str:
    parts = urlsplit(url)
    path = parts.path.replace(quote(old, safe="/"), quote(new, safe="/"))
    assert path != parts.path
    return urlunsplit(parts._replace(path=path))


async def test_round_trip(backend):
    """Bytes PUT to an upload URL come back unchanged from a download URL, as a named file."""
    data = os.urandom(4096)
    await put(backend, "data/set 1 é.bin", data)
    url = await backend.store.presign_download(ATT, "data/set 1 é.bin", 60, "copy.bin")
    reply = await backend.http.get(url)
    assert reply.status_code == 200
    assert reply.content == data
    assert 'filename="copy.bin"' in reply.headers["content-disposition"]


async def test_empty_object(backend):
    """An empty file is an object too: size 0 uploads, heads and downloads."""
    await put(backend, "empty", b"")
    assert await backend.store.head(ATT, "empty") == 0
    assert (await fetch(backend, "empty")).content == b""


async def test_buckets_are_separate(backend):
    """One key in both buckets names two objects."""
    await put(backend, "k", b"artifact", ART)
    await put(backend, "k", b"attachment", ATT)
    assert (await fetch(backend, "k", ART)).content == b"artifact"
    assert (await fetch(backend, "k", ATT)).content == b"attachment"


async def test_key_and_its_folder_coexist(backend):
    """Keys ``a`` and ``a/b`` are both objects, as on S3."""
    await put(backend, "a", b"file")
    await put(backend, "a/b", b"nested")
    assert await backend.store.head(ATT, "a") == 4
    assert await backend.store.head(ATT, "a/b") == 6


async def test_head_reports_size_or_none(backend):
    """head() gives the stored size of an object and None for a missing one."""
    await put(backend, "sized", b"x" * 1234)
    assert await backend.store.head(ATT, "sized") == 1234
    assert await backend.store.head(ATT, "missing") is None


async def test_delete(backend):
    """delete() removes the listed objects and ignores keys that do not exist."""
    await put(backend, "one", b"1")
    await put(backend, "two", b"2")
    await backend.store.delete(ATT, ["one", "never-existed"])
    assert await backend.store.head(ATT, "one") is None
    assert await backend.store.head(ATT, "two") == 1
    # S3 answers 403 rather than 404 when the signer may not list the bucket.
    assert (await fetch(backend, "one")).status_code in (403, 404)


async def test_overwrite(backend):
    """A second upload to a key replaces the object, size included."""
    await put(backend, "same", b"first version")
    await put(backend, "same", b"second")
    assert await backend.store.head(ATT, "same") == 6
    assert (await fetch(backend, "same")).content == b"second"


async def test_more_bytes_than_declared_refused(backend):
    """An upload URL signed for N bytes refuses N+1 and stores nothing."""
    upload = await backend.store.presign_upload(ATT, "capped", 10, 60)
    reply = await backend.http.put(upload.url, content=b"x" * 11)
    assert reply.status_code in (403, 413)
    assert await backend.store.head(ATT, "capped") is None


async def test_expired_upload_url_refused(backend):
    """An upload URL used after its lifetime is refused."""
    upload = await backend.store.presign_upload(ATT, "late", 4, 60)
    backend.advance(61)
    reply = await backend.http.put(upload.url, content=b"late", headers=upload.headers)
    assert reply.status_code == 403
    assert await backend.store.head(ATT, "late") is None


async def test_expired_download_url_refused(backend):
    """A download URL used after its lifetime is refused."""
    await put(backend, "old", b"data")
    url = await backend.store.presign_download(ATT, "old", 30)
    backend.advance(31)
    assert (await backend.http.get(url)).status_code == 403


async def test_upload_url_is_bound_to_its_key(backend):
    """The URL for key A cannot write key B: the signature no longer matches."""
    upload = await backend.store.presign_upload(ATT, "data/a.bin", 3, 60)
    forged = swap_key(upload.url, "data/a.bin", "data/b.bin")
    reply = await backend.http.put(forged, content=b"abc", headers=upload.headers)
    assert reply.status_code == 403
    assert await backend.store.head(ATT, "data/b.bin") is None


async def test_download_url_is_bound_to_its_key(backend):
    """The URL for key A cannot read key B."""
    await put(backend, "mine", b"mine")
    await put(backend, "theirs", b"secret")
    url = await backend.store.presign_download(ATT, "mine", 60)
    assert (await backend.http.get(swap_key(url, "mine", "theirs"))).status_code == 403


async def test_download_url_cannot_upload(backend):
    """A GET URL used for PUT is refused: the method is part of what was signed."""
    await put(backend, "readonly", b"orig")
    url = await backend.store.presign_download(ATT, "readonly", 60)
    reply = await backend.http.put(url, content=b"evil")
    assert reply.status_code == 403
    assert (await fetch(backend, "readonly")).content == b"orig"


async def test_multipart_round_trip(backend):
    """An object above the threshold goes up in parts and comes back whole."""
    data = os.urandom(2 * PART + 12345)
    upload = await backend.store.presign_upload(ATT, "big/blob", len(data), 60)
    assert upload.url is None
    assert upload.multipart is not None
    assert [p.size for p in upload.multipart.parts] == [PART, PART, 12345]
    parts = await send(backend.http, upload, data)
    size = await backend.store.complete_multipart(
        ATT, "big/blob", upload.multipart.upload_id, parts
    )
    assert size == len(data)
    assert await backend.store.head(ATT, "big/blob") == len(data)
    reply = await fetch(backend, "big/blob")
    assert hashlib.sha256(reply.content).digest() == hashlib.sha256(data).digest()


async def test_multipart_part_refuses_more_bytes(backend):
    """Each part URL is signed for its own size."""
    upload = await backend.store.presign_upload(ATT, "big/x", PART + 10, 60)
    last = upload.multipart.parts[-1]
    reply = await backend.http.put(last.url, content=b"y" * (last.size + 1))
    assert reply.status_code in (403, 413)


async def test_multipart_complete_refuses_wrong_etag(backend):
    """Completing with an ETag the part did not answer fails and stores nothing."""
    data = os.urandom(PART + 100)
    upload = await backend.store.presign_upload(ATT, "big/bad", len(data), 60)
    parts = await send(backend.http, upload, data)
    parts[0] = CompletedPart(number=1, etag='"' + "0" * 32 + '"')
    with pytest.raises(UploadIncomplete):
        await backend.store.complete_multipart(ATT, "big/bad", upload.multipart.upload_id, parts)
    assert await backend.store.head(ATT, "big/bad") is None


async def test_multipart_abort(backend):
    """An aborted upload is gone with its parts, and aborting it again is harmless."""
    data = os.urandom(PART + 100)
    upload = await backend.store.presign_upload(ATT, "big/gone", len(data), 60)
    await send(backend.http, upload, data)
    upload_id = upload.multipart.upload_id
    assert upload_id in backend.pending_uploads()
    await backend.store.abort_multipart(ATT, "big/gone", upload_id)
    assert upload_id not in backend.pending_uploads()
    await backend.store.abort_multipart(ATT, "big/gone", upload_id)
    assert await backend.store.head(ATT, "big/gone") is None


async def test_ensure_buckets_creates_them_once(backend):
    """Both buckets exist after ensure_buckets(), and calling it again is harmless."""
    assert backend.bucket_exists(ART)
    assert backend.bucket_exists(ATT)
    await backend.store.ensure_buckets()
    await put(backend, "after-second-ensure", b"ok")


async def test_bucket_auto_creation(moto_url, tmp_path):
    """A store on buckets that do not exist yet creates them at start-up."""
    buckets = _bucket_names()
    exists, _ = _s3_inspectors(moto_url, buckets)
    assert not exists(ART)
    async with _s3_store(moto_url, buckets) as store:
        await store.ensure_buckets()
    assert exists(ART)
    assert exists(ATT)
    local = _local_store(tmp_path / "fresh", Clock())
    await local.ensure_buckets()
    assert (tmp_path / "fresh" / "attachments").is_dir()


async def test_s3_upload_url_signs_length_and_host(moto_url):
    """The SigV4 URL covers Content-Length, so any S3 refuses another size (not only the gate)."""
    async with _s3_store(moto_url, _bucket_names()) as store:
        url = (await store.presign_upload(ATT, "k", 5, 60)).url
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["X-Amz-SignedHeaders"].split(";") == ["content-length", "host"]
    assert query["X-Amz-Expires"] == "60"


async def test_s3_urls_use_the_public_address(moto_url):
    """With public_url, URLs name the address workers reach; API calls use the private one."""
    public = "http://s3.example.test:9000"
    async with _s3_store(moto_url, _bucket_names(), public_url=public) as store:
        await store.ensure_buckets()
        upload = await store.presign_upload(ATT, "k", 1, 60)
    assert upload.url.startswith(f"{public}/")


@pytest.mark.parametrize(
    ("path_style", "prefix"),
    [
        (True, "http://s3.example.test:9000/{bucket}/k"),
        (False, "http://{bucket}.s3.example.test:9000/k"),
    ],
)
async def test_s3_addressing_style_decides_where_the_bucket_goes(moto_url, path_style, prefix):
    """Path-style (MinIO, Ceph) puts the bucket in the path, virtual-hosted (AWS) in the
    host name, for upload and download URLs alike."""
    buckets = _bucket_names()
    public = "http://s3.example.test:9000"
    async with _s3_store(moto_url, buckets, public_url=public, path_style=path_style) as store:
        upload = await store.presign_upload(ATT, "k", 1, 60)
        download = await store.presign_download(ATT, "k", 60)
    expected = prefix.format(bucket=buckets[ATT])
    assert (upload.url.split("?")[0], download.split("?")[0]) == (expected, expected)


# -- the local backend's HTTP side ------------------------------------------------------------


@pytest.fixture
async def local(tmp_path) -> AsyncIterator[Backend]:
    clock = Clock()
    store = _local_store(tmp_path / "objects", clock)
    await store.ensure_buckets()
    app = Litestar([create_router(store)], exception_handlers=EXCEPTION_HANDLERS)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), timeout=10) as http:
        yield Backend(store, http, clock, *_local_inspectors(store.root))


def _leftovers(store: LocalStore) -> list[Path]:
    return list((store.root / ".tmp").iterdir())


async def test_local_fewer_bytes_than_declared(local):
    """A body that ends short of the declared size is refused with 400 and not kept."""
    upload = await local.store.presign_upload(ATT, "short", 10, 60)

    async def body():
        yield b"12345"

    reply = await local.http.put(upload.url, content=body())
    assert reply.status_code == 400
    assert await local.store.head(ATT, "short") is None
    assert _leftovers(local.store) == []


async def test_local_streamed_body_over_size_is_413(local):
    """A body without Content-Length is cut off with 413 once it passes the declared size."""
    upload = await local.store.presign_upload(ATT, "long", 10, 60)

    async def body():
        for _ in range(5):
            yield b"abcd"

    reply = await local.http.put(upload.url, content=body())
    assert reply.status_code == 413
    assert reply.json()["error"] == "too_large"
    assert await local.store.head(ATT, "long") is None
    assert _leftovers(local.store) == []


async def test_local_short_content_length_is_400(local):
    """A Content-Length below the declared size is refused before the body is read."""
    upload = await local.store.presign_upload(ATT, "k", 10, 60)
    reply = await local.http.put(upload.url, content=b"1234")
    assert reply.status_code == 400


@pytest.mark.parametrize("path", ["data//a.bin", "data/%2E%2E/a.bin", "data%5Ca.bin"])
async def test_local_non_canonical_key_in_url_is_400(local, path):
    """A URL whose key is not canonical is refused before its signature is even checked."""
    upload = await local.store.presign_upload(ATT, "data/a.bin", 3, 60)
    forged = upload.url.replace("data/a.bin", path)
    reply = await local.http.put(forged, content=b"abc", headers=upload.headers)
    assert reply.status_code == 400
    assert "key" in reply.json()["message"]


async def test_local_tampered_terms_are_403(local):
    """Raising the size in the query breaks the signature."""
    upload = await local.store.presign_upload(ATT, "k", 3, 60)
    forged = upload.url.replace("size=3", "size=4")
    reply = await local.http.put(forged, content=b"abcd")
    assert reply.status_code == 403
    assert reply.json()["error"] == "forbidden"


async def test_local_unknown_bucket_is_404(local):
    """A bucket name that is not artifacts or attachments is not found."""
    upload = await local.store.presign_upload(ATT, "k", 3, 60)
    reply = await local.http.put(upload.url.replace("/attachments/", "/etc/"), content=b"abc")
    assert reply.status_code == 404


async def test_local_objects_stay_inside_the_root(local):
    """Objects are filed under a hash of the key, whatever the key says."""
    await put(local, "a/b/c.txt", b"x")
    path = local.store.object_path(ATT, "a/b/c.txt")
    assert path.is_file()
    assert path.parent.parent == local.store.root / "attachments"


def test_local_secret_is_created_once_and_private(tmp_path):
    """The signing secret is made on first use, readable by its owner only, then reused."""
    path = tmp_path / "keys" / "objects.key"
    first = load_secret(path)
    assert len(first) == 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_secret(path) == first


async def test_parts_sent_in_any_order_join_in_place(backend):
    """Parts uploaded last-first still make the object in part order (each lands at its
    own offset)."""
    data = os.urandom(2 * PART + 3)
    upload = await backend.store.presign_upload(ATT, "reversed", len(data), 60)
    done = {}
    for part in reversed(upload.multipart.parts):
        chunk = data[part.offset : part.offset + part.size]
        reply = await backend.http.put(part.url, content=chunk, headers=part.headers)
        reply.raise_for_status()
        done[part.number] = CompletedPart(number=part.number, etag=reply.headers["ETag"])
    parts = [done[number] for number in sorted(done)]
    size = await backend.store.complete_multipart(
        ATT, "reversed", upload.multipart.upload_id, parts
    )
    assert size == len(data)
    assert (await fetch(backend, "reversed")).content == data


async def test_a_part_sent_again_answers_only_to_its_new_etag(backend):
    """The second PUT of a part replaces it: completing with the first ETag fails, with the
    second it holds the second body."""
    data = os.urandom(PART + 10)
    upload = await backend.store.presign_upload(ATT, "again", len(data), 60)
    first, last = upload.multipart.parts
    other = os.urandom(first.size)
    etags = []
    for body in (data[: first.size], other):
        reply = await backend.http.put(first.url, content=body, headers=first.headers)
        etags.append(reply.headers["ETag"])
    reply = await backend.http.put(last.url, content=data[first.size :], headers=last.headers)
    tail = CompletedPart(number=2, etag=reply.headers["ETag"])
    upload_id = upload.multipart.upload_id
    with pytest.raises(UploadIncomplete):
        await backend.store.complete_multipart(
            ATT, "again", upload_id, [CompletedPart(number=1, etag=etags[0]), tail]
        )
    await backend.store.complete_multipart(
        ATT, "again", upload_id, [CompletedPart(number=1, etag=etags[1]), tail]
    )
    assert (await fetch(backend, "again")).content == other + data[first.size :]


async def test_local_a_part_refused_midway_cannot_be_completed(local):
    """A part whose second PUT was cut off (too long) no longer completes with its first
    ETag: its bytes may have changed."""
    data = os.urandom(PART + 10)
    upload = await local.store.presign_upload(ATT, "cut", len(data), 60)
    first, last = upload.multipart.parts
    reply = await local.http.put(first.url, content=data[: first.size], headers=first.headers)
    etag = reply.headers["ETag"]

    async def too_long():
        yield data[: first.size]
        yield b"more"

    assert (await local.http.put(first.url, content=too_long())).status_code == 413
    reply = await local.http.put(last.url, content=data[first.size :], headers=last.headers)
    parts = [CompletedPart(number=1, etag=etag), CompletedPart(2, reply.headers["ETag"])]
    with pytest.raises(UploadIncomplete):
        await local.store.complete_multipart(ATT, "cut", upload.multipart.upload_id, parts)


async def test_local_a_part_being_received_refuses_a_second_put_with_503(local):
    """Two PUTs of one part at once: the second is refused as retryable (503) while the first
    streams, and the first still stores its bytes."""
    data = os.urandom(PART + 10)
    upload = await local.store.presign_upload(ATT, "busy", len(data), 60)
    first = upload.multipart.parts[0]
    started, release = asyncio.Event(), asyncio.Event()

    async def slow():
        yield data[:1000]
        started.set()
        await release.wait()
        yield data[1000 : first.size]

    sending = asyncio.create_task(local.http.put(first.url, content=slow()))
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.sleep(0.05)  # the first PUT holds the part's lock by now
    second = await local.http.put(first.url, content=data[: first.size], headers=first.headers)
    assert second.status_code == 503
    release.set()
    assert (await asyncio.wait_for(sending, 10)).status_code == 200
