"""Task artifacts (F2, X4) and resources (T1, X3) through the real app, with workers driven
by the real worker API (the dispatch tests' miniature worker, no processes).

The worker uploads for the attempt it holds; once that attempt is superseded (its worker was
lost and the task ran again elsewhere) anything it sends is refused with 409.
"""

from __future__ import annotations

import tarfile
from datetime import timedelta

import pytest

from mitosis_sdk import errors
from mitosis_sdk.archives import pack_directory
from mitosis_sdk.schemas import ArtifactType, Resource, Role, TaskFilter
from mitosis_sdk.schemas.files import ArtifactSelection
from mitosis_server.db.models import utcnow
from tests.integration.conftest import PART
from tests.integration.server.fleet import silence, spec, start_worker

RESULT, STD_LOG = ArtifactType.RESULT, ArtifactType.STD_LOG


@pytest.fixture
async def worker(lab, transport):
    """A worker of lab's admin with a write grant on lab."""
    return await start_worker(lab["group-admin"], transport, groups={"lab": Role.WRITE})


async def run(writer, worker, **fields):
    """Submit a task to lab as ``writer`` and let ``worker`` claim it."""
    submitted = await writer.submit_task(spec("true", group="lab", **fields))
    assignment = await worker.fetch_one()
    assert assignment.task == submitted.uuid
    return assignment


async def test_worker_uploads_outputs_of_its_attempt(lab, worker, make_file, tmp_path):
    """The worker's tar.gz outputs are listed, downloadable by readers, charged to the group."""
    task = await run(lab["write"], worker)
    folder = tmp_path / "result"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "answer.txt").write_text("42\n")
    archive = tmp_path / "result.tar.gz"
    size = pack_directory(folder, archive, "result").size
    logs = make_file("std.tar.gz", PART + 3)  # a multipart upload
    info = await worker.client.upload_attempt_artifact(
        worker.uuid, task.task, task.attempt, RESULT, archive
    )
    assert (info.type, info.size, info.attempt) == (RESULT, size, 1)
    await worker.client.upload_attempt_artifact(worker.uuid, task.task, task.attempt, STD_LOG, logs)
    reader = lab["read"]
    listed = await reader.list_artifacts(task.task)
    assert [(a.type, a.size) for a in listed] == [(RESULT, size), (STD_LOG, PART + 3)]
    copy = await reader.download_artifact(task.task, RESULT, tmp_path)
    assert copy.name == f"{task.task}-result.tar.gz"
    with tarfile.open(copy) as tar:
        assert tar.extractfile("result/sub/answer.txt").read() == b"42\n"
    assert (await reader.get_group("lab")).storage_used == size + PART + 3


async def test_superseded_attempt_cannot_upload(app, lab, worker, transport, make_file):
    """A worker whose attempt was superseded gets 409 at begin and at complete; nothing of
    its upload is kept, and the new attempt's worker uploads normally."""
    task = await run(lab["write"], worker)
    path = make_file("result.tar.gz", 100)
    ticket = await worker.client.request(
        "POST",
        f"/api/workers/{worker.uuid}/tasks/{task.task}/artifacts/result/uploads",
        body={"size": 100, "attempt": task.attempt},
        result=dict,
    )
    coordinator = app.state.coordinator
    await silence(app, worker, coordinator.settings.heartbeat_timeout + 1)
    await coordinator.liveness.sweep()
    second = await start_worker(lab["group-admin"], transport, groups={"lab": Role.WRITE})
    again = await second.fetch_one()
    assert (again.task, again.attempt) == (task.task, 2)
    base = f"/api/workers/{worker.uuid}/tasks/{task.task}/artifacts/uploads/{ticket['id']}"
    with pytest.raises(errors.Conflict, match="superseded"):
        await worker.client.request("POST", f"{base}/complete", body={"parts": []})
    with pytest.raises(errors.Conflict, match="superseded"):
        await worker.client.upload_attempt_artifact(worker.uuid, task.task, 1, RESULT, path)
    await worker.client.request("DELETE", base)
    assert (await lab["read"].get_group("lab")).storage_used == 0
    assert await lab["read"].list_artifacts(task.task) == []
    info = await second.client.upload_attempt_artifact(second.uuid, task.task, 2, RESULT, path)
    assert info.attempt == 2


async def test_other_workers_cannot_upload_for_an_attempt(lab, worker, transport, make_file):
    """Only the worker holding the attempt may upload for it (403)."""
    task = await run(lab["write"], worker)
    other = await start_worker(lab["group-admin"], transport, groups={"lab": Role.WRITE})
    with pytest.raises(errors.Forbidden):
        await other.client.upload_attempt_artifact(
            other.uuid, task.task, task.attempt, RESULT, make_file("x", 1)
        )


async def test_user_upload_replace_and_delete_adjust_usage_exactly(lab, worker, make_file):
    """Users with write upload artifacts too; a replacement charges only the new size."""
    task = await run(lab["write"], worker)
    writer = lab["write"]
    await writer.upload_artifact(task.task, RESULT, make_file("a", 500))
    info = await writer.upload_artifact(task.task, RESULT, make_file("b", 120))
    assert (info.size, info.attempt, info.uploaded_by) == (120, None, "member_write")
    assert (await writer.get_group("lab")).storage_used == 120
    await writer.delete_artifact(task.task, RESULT)
    assert (await writer.get_group("lab")).storage_used == 0
    with pytest.raises(errors.NotFound):
        await writer.artifact_link(task.task, RESULT)


async def test_selections_by_filter_and_uuid_list(lab, worker, make_file, tmp_path):
    """Links for a task filter or a UUID list; delete-by-filter frees exactly their sizes."""
    writer = lab["write"]
    first = await run(writer, worker, labels=["exp"])
    await worker.finish(first)
    second = await run(writer, worker)
    await writer.upload_artifact(first.task, RESULT, make_file("a", 10))
    await writer.upload_artifact(second.task, RESULT, make_file("b", 20))
    await writer.upload_artifact(second.task, STD_LOG, make_file("c", 40))
    everything = ArtifactSelection(filter=TaskFilter(group="lab"), type=RESULT)
    links = await lab["read"].artifact_links(everything)
    assert (links.total, [link.task for link in links.links]) == (2, [second.task, first.task])
    by_list = ArtifactSelection(filter=TaskFilter(uuids=[first.task]))
    assert [link.size for link in (await writer.artifact_links(by_list)).links] == [10]
    labelled = ArtifactSelection(filter=TaskFilter(labels=["exp"]))
    assert (await writer.artifact_links(labelled)).total == 1
    with pytest.raises(errors.BadRequest, match="filter"):
        await writer.delete_artifacts(ArtifactSelection(filter=TaskFilter()))
    reply = await writer.delete_artifacts(everything)
    assert (reply.deleted, reply.freed) == (2, 30)
    assert (await writer.get_group("lab")).storage_used == 40
    with pytest.raises(errors.NotFound):
        await lab["non-member"].artifact_links(everything)


async def test_resources_resolve_for_a_creator_who_may_read_them(lab, worker, make_file, tmp_path):
    """Attachments of the task's group and artifacts of readable tasks become URLs, and the
    SDK downloads them into the resource directory at their paths."""
    writer = lab["write"]
    await writer.upload_attachment("lab", make_file("in.csv", data=b"a,b\n"), "data/in.csv")
    upstream = await run(writer, worker)
    await writer.upload_artifact(upstream.task, RESULT, make_file("r", data=b"tarball"))
    await worker.finish(upstream)
    resources = [
        Resource(attachment="data/in.csv", path="inputs/in.csv"),
        Resource(artifact=upstream.task, type=RESULT, path="prev.tar.gz"),
    ]
    task = await run(writer, worker, resources=resources)
    links = await worker.client.task_resources(worker.uuid, task.task, task.attempt)
    assert [(link.path, link.size) for link in links] == [("inputs/in.csv", 4), ("prev.tar.gz", 7)]
    folder = tmp_path / "resources"
    paths = await worker.client.download_resources(worker.uuid, task.task, task.attempt, folder)
    assert [p.read_bytes() for p in paths] == [b"a,b\n", b"tarball"]


async def test_missing_resources_are_404_naming_them(lab, worker):
    """A missing attachment or artifact is a 404 that says which resource."""
    writer = lab["write"]
    task = await run(writer, worker, resources=[Resource(attachment="gone.csv", path="x.csv")])
    with pytest.raises(errors.NotFound, match=r"'x.csv'.*gone\.csv"):
        await worker.client.task_resources(worker.uuid, task.task, task.attempt)
    await worker.finish(task)
    artifact = Resource(artifact=task.task, type=STD_LOG, path="log.tar.gz")
    task = await run(writer, worker, resources=[artifact])
    with pytest.raises(errors.NotFound, match="std-log"):
        await worker.client.task_resources(worker.uuid, task.task, task.attempt)


async def test_resources_the_creator_cannot_read_are_403(lab, worker, make_file):
    """An artifact of a group the creator is not in, or the creator's lost membership: 403."""
    outsider = lab["non-member"]
    await outsider.create_group("secret")
    foreign = await outsider.submit_task(spec("true", group="secret"))
    writer = lab["write"]
    sneaky = Resource(artifact=foreign.uuid, type=RESULT, path="theirs.tar.gz")
    task = await run(writer, worker, resources=[sneaky])
    with pytest.raises(errors.Forbidden, match="may not read"):
        await worker.client.task_resources(worker.uuid, task.task, task.attempt)
    await worker.finish(task)
    await writer.upload_attachment("lab", make_file("d", 1), "d")
    task = await run(writer, worker, resources=[Resource(attachment="d", path="d")])
    await lab["group-admin"].remove_members("lab", ["member_write"])
    with pytest.raises(errors.Forbidden, match="can no longer read"):
        await worker.client.task_resources(worker.uuid, task.task, task.attempt)


async def test_resources_need_the_attempt_the_worker_holds(lab, worker, transport, app):
    """Another worker, or a superseded attempt, gets no URLs."""
    task = await run(lab["write"], worker)
    other = await start_worker(lab["group-admin"], transport, groups={"lab": Role.WRITE})
    with pytest.raises(errors.Forbidden):
        await other.client.task_resources(other.uuid, task.task, task.attempt)
    coordinator = app.state.coordinator
    await coordinator.liveness.sweep(
        utcnow() + timedelta(seconds=coordinator.settings.heartbeat_timeout + 1)
    )
    assert (await other.fetch_one()).attempt == 2
    with pytest.raises(errors.Conflict):
        await worker.client.task_resources(worker.uuid, task.task, task.attempt)


async def test_resource_paths_escaping_the_resource_dir_are_refused_at_submit(lab):
    """'../x', '/abs', 'a/../../b' as a resource's local path, or '..' in its attachment key:
    a 400 naming the field, at submit and at change, and nothing is created or changed."""
    writer = lab["write"]
    queued = await writer.submit_task(spec("true", group="lab"))
    bad = [
        {"attachment": "data/x", "path": "../x"},
        {"attachment": "data/x", "path": "/etc/passwd"},
        {"attachment": "data/x", "path": "a/../../b"},
        {"attachment": "../other-group/x", "path": "x"},
    ]
    refusals = {}
    for resource in bad:
        body = {"command": ["true"], "group": "lab", "resources": [resource]}
        submitted = await writer._http.post("/api/tasks", json=body, headers=writer._headers())
        changed = await writer._http.patch(
            f"/api/tasks/{queued.uuid}", json={"resources": [resource]}, headers=writer._headers()
        )
        refusals[str(resource)] = [
            (r.status_code, "resources." in r.json()["message"]) for r in (submitted, changed)
        ]
    assert refusals == {str(r): [(400, True), (400, True)] for r in bad}
    assert (await writer.query_tasks()).total == 1
    assert (await writer.get_task(queued.uuid)).resources == []


async def test_artifacts_over_the_quota_are_refused_before_bytes_move(
    lab, admin, worker, make_file, behind
):
    """A worker's or a user's artifact one byte over the quota: 422 at begin, no URL, no
    reservation, no artifact; one that fits is stored and charged."""
    await admin.change_storage_quota("lab", "=99")
    task = await run(lab["write"], worker)
    with pytest.raises(errors.QuotaExceeded):
        await worker.client.upload_attempt_artifact(
            worker.uuid, task.task, task.attempt, RESULT, make_file("big", 100)
        )
    with pytest.raises(errors.QuotaExceeded):
        await lab["write"].upload_artifact(task.task, STD_LOG, make_file("big2", 100))
    assert (await lab["read"].get_group("lab")).storage_used == 0
    assert await behind.uploads() == 0
    assert await lab["read"].list_artifacts(task.task) == []
    info = await worker.client.upload_attempt_artifact(
        worker.uuid, task.task, task.attempt, RESULT, make_file("fits", 99)
    )
    assert info.size == 99
    assert (await lab["read"].get_group("lab")).storage_used == 99
