"""Every task and worker endpoint against every kind of caller (the authorization matrix).

Callers: anonymous, a user who is not a member of ``lab``, members with read, write or admin
role in it, a Mitosis admin who is no member, and a worker token. Each endpoint states who
may call it; the others get 401 (anonymous), 404 (cannot see the group, task or worker) or
403, and change nothing. Targets are per caller, so one caller's success cannot disturb the
next; endpoints run in the listed order.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mitosis_sdk.schemas import Member, Role
from tests.integration.server.fleet import spec, start_worker

CALLERS = ["anonymous", "non-member", "read", "write", "group-admin", "admin", "worker"]
READERS = {"read", "write", "group-admin", "admin"}
WRITERS = {"write", "group-admin", "admin"}
MANAGERS = {"group-admin", "admin"}


@dataclass
class Endpoint:
    method: str
    path: str  # {task}, {task2} and {worker}: this caller's targets
    body: dict | None
    allowed: set[str]
    hidden: bool = True  # non-members get 404 (else 403)

    def expected(self, caller: str) -> int:
        if caller == "anonymous":
            return 401
        if caller in self.allowed:
            return 200
        return 404 if self.hidden and caller == "non-member" else 403


LAB_TASK = {"command": ["x"], "group": "lab"}
USER_ENDPOINTS = {
    "submit": Endpoint("POST", "/api/tasks", LAB_TASK, WRITERS),
    "submit-many": Endpoint(
        "POST", "/api/tasks/batch", {"tasks": [LAB_TASK], "all_or_nothing": True}, WRITERS
    ),
    "query-tasks": Endpoint("POST", "/api/tasks/query", {"group": "lab"}, READERS),
    "get-task": Endpoint("GET", "/api/tasks/{task}", None, READERS),
    "change-task": Endpoint("PATCH", "/api/tasks/{task}", {"priority": 3}, WRITERS),
    "task-labels": Endpoint("PUT", "/api/tasks/{task}/labels", {"labels": ["l"]}, WRITERS),
    "cancel-many": Endpoint("POST", "/api/tasks/cancel", {"uuids": ["{task2}"]}, WRITERS),
    "cancel-task": Endpoint("POST", "/api/tasks/{task}/cancel", None, WRITERS),
    "register": Endpoint(
        "POST", "/api/workers", {"grants": [{"group": "lab", "role": "write"}]}, WRITERS
    ),
    "query-workers": Endpoint("POST", "/api/workers/query", {"group": "lab"}, READERS),
    "get-worker": Endpoint("GET", "/api/workers/{worker}", None, READERS),
    "worker-tags": Endpoint("PUT", "/api/workers/{worker}/tags", {"tags": ["t"]}, MANAGERS),
    "worker-labels": Endpoint("PUT", "/api/workers/{worker}/labels", {"labels": []}, MANAGERS),
    "grant": Endpoint(
        "POST",
        "/api/workers/{worker}/grants",
        {"grants": [{"group": "lab", "role": "admin"}]},
        MANAGERS,
    ),
    "ungrant": Endpoint(
        "POST", "/api/workers/{worker}/grants/remove", {"groups": ["side"]}, MANAGERS
    ),
    "drain": Endpoint("POST", "/api/workers/{worker}/drain", None, MANAGERS),
    "resume": Endpoint("POST", "/api/workers/{worker}/resume", None, MANAGERS),
    "shutdown": Endpoint("POST", "/api/workers/{worker}/shutdown", {"force": False}, MANAGERS),
    "shutdown-many": Endpoint(
        "POST", "/api/workers/shutdown", {"uuids": ["{worker}"], "force": True}, MANAGERS
    ),
    "admin-shutdown": Endpoint(
        "POST", "/api/admin/workers/{worker}/shutdown", {"force": False}, {"admin"}, False
    ),
}


def _fill(value, targets: dict[str, str]):
    if isinstance(value, str):
        for name, target in targets.items():
            value = value.replace("{" + name + "}", target)
        return value
    if isinstance(value, list):
        return [_fill(v, targets) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, targets) for k, v in value.items()}
    return value


async def _call(client, method: str, path: str, body) -> int:
    response = await client._http.request(method, path, json=body, headers=client._headers())
    if response.status_code >= 400:
        assert set(response.json()) >= {"error", "message"}
    return 200 if response.status_code < 300 else response.status_code


@pytest.fixture
async def lab(make_user, connect, admin, transport):
    """``lab`` with its members; the starter (a writer of lab and side) runs the workers."""
    owner = await make_user("owner")
    await owner.create_group("lab")
    await owner.create_group("side")
    clients = {"anonymous": await connect(), "admin": admin, "group-admin": owner}
    members = [Member(username="starter", role=Role.WRITE)]
    for role in ("read", "write"):
        clients[role] = await make_user(f"member_{role}")
        members.append(Member(username=f"member_{role}", role=Role(role)))
    clients["non-member"] = await make_user("outsider")
    starter = await make_user("starter")
    await owner.update_members("lab", members)
    await owner.update_members("side", [Member(username="starter", role=Role.WRITE)])
    grants = {"lab": Role.ADMIN, "side": Role.WRITE}
    worker = await start_worker(starter, transport, groups=grants)
    clients["worker"] = worker.client
    return owner, starter, clients, grants


async def test_user_endpoints_admit_exactly_their_callers(lab, transport):
    """Allowed callers succeed; the anonymous get 401; the others 403, or 404 if hidden;
    a worker token is refused on every user endpoint."""
    owner, starter, clients, grants = lab
    targets = {}
    for caller in CALLERS:
        task, task2 = (await owner.submit_tasks([spec("x", group="lab")] * 2)).results
        worker = await start_worker(starter, transport, groups=grants)
        targets[caller] = {
            "task": str(task.task.uuid),
            "task2": str(task2.task.uuid),
            "worker": worker.uuid,
        }
    actual, expected = {}, {}
    for name, endpoint in USER_ENDPOINTS.items():
        for caller in CALLERS:
            path = _fill(endpoint.path, targets[caller])
            body = _fill(endpoint.body, targets[caller])
            actual[name, caller] = await _call(clients[caller], endpoint.method, path, body)
            expected[name, caller] = endpoint.expected(caller)
    assert {k: v for k, v in actual.items() if v != expected[k]} == {}


async def test_worker_endpoints_take_only_the_workers_own_token(lab, transport):
    """Heartbeat, fetch, reports and unregister: the worker's own token only — not another
    worker's, not its starter's, not an admin's."""
    owner, starter, clients, grants = lab
    worker = await start_worker(starter, transport, groups=grants)
    task = await owner.submit_task(spec("x", group="lab"))
    callers = {
        "own": worker.client,
        "other-worker": clients["worker"],
        "starter": starter,
        "admin": clients["admin"],
        "anonymous": clients["anonymous"],
    }
    base = f"/api/workers/{worker.uuid}"
    endpoints = [
        ("heartbeat", f"{base}/heartbeat", {"running": []}),
        ("fetch", f"{base}/fetch", {"wait": 0}),
        ("phase", f"{base}/tasks/{task.uuid}/phase", {"attempt": 1, "phase": "spawned"}),
        ("result", f"{base}/tasks/{task.uuid}/result", {"attempt": 1, "exit_code": 0}),
        ("unregister", f"{base}/unregister", None),
    ]
    actual, expected = {}, {}
    for name, path, body in endpoints:
        for caller, client in callers.items():
            if caller == "own":
                continue
            actual[name, caller] = await _call(client, "POST", path, body)
            expected[name, caller] = 401 if caller == "anonymous" else 403
        actual[name, "own"] = await _call(worker.client, "POST", path, body)
        expected[name, "own"] = 200
    assert {k: v for k, v in actual.items() if v != expected[k]} == {}
    assert (await owner.get_task(task.uuid)).state == "completed"
