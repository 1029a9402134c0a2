"""Every files endpoint against every kind of caller (FEATURES F2, F3, T1; roles G).

Callers: anonymous, a non-member, members of ``lab`` with read, write and admin role, a
Mitosis admin who is not a member, the worker holding the task's attempt and another worker.
Allowed callers succeed; the anonymous get 401; non-members 404 where the group (or task) is
hidden from them; everyone else 403, and nothing changes for them. One test per database
walks the whole table (each row says who may call the endpoint), to keep the suite quick.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mitosis_sdk.schemas import ArtifactType, Role
from mitosis_sdk.schemas.files import UploadTicket
from tests.integration.server.fleet import spec, start_worker

USERS = ["non-member", "read", "write", "group-admin", "admin"]
CALLERS = ["anonymous", *USERS, "worker", "other-worker"]
READERS = {"read", "write", "group-admin", "admin"}
WRITERS = {"write", "group-admin", "admin"}
WORKER = {"worker"}


@dataclass
class Endpoint:
    method: str
    path: str
    allowed: set[str]
    body: dict | None = None
    hidden: bool = True  # non-members get 404 (the group or task is hidden from them)
    # Needs an upload of the caller's own (begun, and with its bytes sent when "sent").
    upload: str | None = None
    uploaded: bool = False
    restore: bool = False  # the writer puts the deleted result artifact back afterwards
    params: dict = field(default_factory=dict)

    def refusal(self, caller: str) -> int:
        if caller == "anonymous":
            return 401
        if caller == "non-member" and self.hidden:
            return 404
        return 403


ATT = "/api/groups/lab/attachments"
TASK = "/api/tasks/{task}/artifacts"
OWN = "/api/workers/{worker}/tasks/{task}"
ENDPOINTS = {
    "attachment-begin": Endpoint("POST", f"{ATT}/uploads", WRITERS, {"key": "k_{c}", "size": 1}),
    "attachment-complete": Endpoint(
        "POST", f"{ATT}/uploads/{{upload}}/complete", WRITERS, {}, upload="att", uploaded=True
    ),
    "attachment-abort": Endpoint("DELETE", f"{ATT}/uploads/{{upload}}", WRITERS, upload="att"),
    "attachment-query": Endpoint("GET", ATT, READERS),
    "attachment-folder": Endpoint("GET", f"{ATT}/folder", READERS),
    "attachment-info": Endpoint("GET", f"{ATT}/info", READERS, params={"key": "doc"}),
    "attachment-download": Endpoint("GET", f"{ATT}/download", READERS, params={"key": "doc"}),
    "attachment-links": Endpoint("POST", f"{ATT}/links", READERS, {"all": True}),
    "attachment-delete": Endpoint("DELETE", ATT, WRITERS, params={"key": "del_{c}"}),
    "attachment-delete-many": Endpoint("POST", f"{ATT}/delete", WRITERS, {"keys": ["dm_{c}"]}),
    "artifact-list": Endpoint("GET", TASK, READERS),
    "artifact-download": Endpoint("GET", f"{TASK}/result/download", READERS),
    "artifact-delete": Endpoint("DELETE", f"{TASK}/result", WRITERS, restore=True),
    "artifact-begin": Endpoint("POST", f"{TASK}/exec-log/uploads", WRITERS, {"size": 1}),
    "artifact-complete": Endpoint(
        "POST", f"{TASK}/uploads/{{upload}}/complete", WRITERS, {}, upload="art", uploaded=True
    ),
    "artifact-abort": Endpoint("DELETE", f"{TASK}/uploads/{{upload}}", WRITERS, upload="art"),
    "artifacts-links": Endpoint(
        "POST", "/api/artifacts/links", READERS, {"filter": {"group": "lab"}}
    ),
    "artifacts-delete": Endpoint(
        "POST",
        "/api/artifacts/delete",
        WRITERS,
        {"filter": {"group": "lab"}, "type": "exec-log"},
    ),
    "retention-get": Endpoint("GET", "/api/groups/lab/retention", READERS),
    "retention-set": Endpoint(
        "PUT", "/api/groups/lab/retention", {"group-admin", "admin"}, {"artifact_days": 30}
    ),
    "worker-resources": Endpoint(
        "GET", f"{OWN}/resources", WORKER, params={"attempt": 1}, hidden=False
    ),
    "worker-begin": Endpoint(
        "POST", f"{OWN}/artifacts/exec-log/uploads", WORKER, {"size": 1, "attempt": 1}, hidden=False
    ),
    "worker-complete": Endpoint(
        "POST",
        f"{OWN}/artifacts/uploads/{{upload}}/complete",
        WORKER,
        {},
        hidden=False,
        upload="own",
        uploaded=True,
    ),
    "worker-abort": Endpoint(
        "DELETE", f"{OWN}/artifacts/uploads/{{upload}}", WORKER, hidden=False, upload="own"
    ),
}


class Matrix:
    """The callers, and the objects each endpoint is called on."""

    def __init__(self, lab, connect, transport, make_file) -> None:
        self.lab, self.connect, self.transport, self.make_file = lab, connect, transport, make_file

    async def setup(self) -> None:
        owner, writer = self.lab["group-admin"], self.lab["write"]
        self.worker = await start_worker(owner, self.transport, groups={"lab": Role.WRITE})
        other = await start_worker(owner, self.transport, groups={"lab": Role.WRITE})
        self.clients = {
            **self.lab,
            "anonymous": await self.connect(),
            "worker": self.worker.client,
            "other-worker": other.client,
        }
        await writer.upload_attachment("lab", self.make_file("doc", 3), "doc")
        for caller in CALLERS:
            for prefix in ("del", "dm"):
                key = f"{prefix}_{caller.replace('-', '_')}"
                await writer.upload_attachment("lab", self.make_file(key, 1), key)
        await writer.submit_task(spec("true", group="lab"))
        self.task = (await self.worker.fetch_one()).task
        await self.restore()

    async def restore(self) -> None:
        path = self.make_file("result.tar.gz", 5)
        await self.lab["write"].upload_artifact(self.task, ArtifactType.RESULT, path)

    async def upload_for(self, kind: str, caller: str, uploaded: bool) -> str:
        """An upload of the caller's own when it may make one, else the writer's (or the
        worker's): refusing comes before looking the upload up."""
        owner = caller
        if kind == "own" and caller != "worker":
            owner = "worker"
        elif kind != "own" and caller not in WRITERS:
            owner = "write"
        client = self.clients[owner]
        if kind == "att":
            ticket = await client.begin_attachment_upload("lab", f"u_{caller}", 0)
        elif kind == "art":
            ticket = await client.request(
                "POST",
                f"/api/tasks/{self.task}/artifacts/exec-log/uploads",
                body={"size": 0},
                result=UploadTicket,
            )
        else:
            ticket = await client.request(
                "POST",
                f"/api/workers/{self.worker.uuid}/tasks/{self.task}/artifacts/exec-log/uploads",
                body={"size": 0, "attempt": 1},
                result=UploadTicket,
            )
        if uploaded:
            await client._transfers.put(
                ticket.upload.url, content=b"", headers=ticket.upload.headers
            )
        return str(ticket.id)

    async def call(self, endpoint: Endpoint, caller: str) -> int:
        client = self.clients[caller]
        name = caller.replace("-", "_")
        values = {"task": self.task, "worker": self.worker.uuid, "c": name}
        if endpoint.upload:
            values["upload"] = await self.upload_for(endpoint.upload, caller, endpoint.uploaded)
        path = endpoint.path.format(**values)
        body = _fill(endpoint.body, values)
        params = _fill(endpoint.params, values)
        response = await client._http.request(
            endpoint.method, path, json=body, params=params, headers=client._headers()
        )
        if response.status_code >= 400:
            assert set(response.json()) >= {"error", "message"}, response.text
        elif endpoint.restore:
            await self.restore()
        return 200 if response.status_code < 300 else response.status_code


def _fill(value, values: dict):
    if isinstance(value, str):
        return value.format(**values)
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    return value


async def test_every_files_endpoint_admits_exactly_its_callers(lab, connect, transport, make_file):
    """For each endpoint: allowed callers succeed, the others get 401/403/404 as they should."""
    matrix = Matrix(lab, connect, transport, make_file)
    await matrix.setup()
    wrong = {}
    for name, endpoint in ENDPOINTS.items():
        for caller in CALLERS:
            expected = 200 if caller in endpoint.allowed else endpoint.refusal(caller)
            actual = await matrix.call(endpoint, caller)
            if actual != expected:
                wrong[f"{name} by {caller}"] = f"{actual}, expected {expected}"
    assert wrong == {}
    # Refused deletes changed nothing: the keys of callers without write are still there.
    keys = {a.key for a in (await lab["read"].query_attachments("lab", limit=1000)).attachments}
    for caller in CALLERS:
        name = caller.replace("-", "_")
        assert (f"del_{name}" in keys) == (caller not in WRITERS)
