"""Every accounts/groups endpoint against every kind of caller.

Callers: anonymous, a member with read, write or admin role in group ``lab``, a user who is
not a member, and a Mitosis admin who is not a member either. Each endpoint states who may
call it; everybody else must get the right refusal (401 anonymous, 404 for a group one
cannot see, 403 otherwise) and change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mitosis_sdk.schemas import Member, Role

ROLES = ["anonymous", "non-member", "read", "write", "group-admin", "admin"]


@dataclass
class Endpoint:
    method: str
    path: str
    body: dict | None
    allowed: set[str]
    # Group endpoints hide the group from non-members (404); members lacking the role get 403.
    group_scoped: bool = False

    def refusal_for(self, role: str) -> int:
        if role == "anonymous":
            return 401
        return 404 if self.group_scoped and role == "non-member" else 403

    def request_for(self, role: str) -> tuple[str, dict | None]:
        """Per-role targets, so a successful call by one role cannot disturb the next."""
        path = self.path.replace("{role}", role.replace("-", "_"))
        body = self.body
        if body is not None:
            body = {
                k: (v.replace("{role}", role.replace("-", "_")) if isinstance(v, str) else v)
                for k, v in body.items()
            }
        return path, body


EVERYONE = {"non-member", "read", "write", "group-admin", "admin"}
ADMIN_ONLY = {"admin"}
ENDPOINTS = {
    "whoami": Endpoint("GET", "/api/auth/whoami", None, EVERYONE),
    "my-groups": Endpoint("GET", "/api/users/me/groups", None, EVERYONE),
    "create-group": Endpoint("POST", "/api/groups", {"name": "g_{role}"}, EVERYONE),
    "get-group": Endpoint(
        "GET", "/api/groups/lab", None, {"read", "write", "group-admin", "admin"}, True
    ),
    "update-members": Endpoint(
        "POST",
        "/api/groups/lab/members",
        {"members": [{"username": "extra", "role": "read"}]},
        {"group-admin", "admin"},
        True,
    ),
    "remove-members": Endpoint(
        "POST",
        "/api/groups/lab/members/remove",
        {"usernames": ["extra"]},
        {"group-admin", "admin"},
        True,
    ),
    "create-user": Endpoint(
        "POST", "/api/admin/users", {"username": "new_{role}", "password": "pw"}, ADMIN_ONLY
    ),
    "list-users": Endpoint("GET", "/api/admin/users", None, ADMIN_ONLY),
    "delete-user": Endpoint("DELETE", "/api/admin/users/victim_{role}", None, ADMIN_ONLY),
    "reset-password": Endpoint(
        "POST", "/api/admin/users/victim_{role}/password", {"new_password": "x"}, ADMIN_ONLY
    ),
    "user-state": Endpoint(
        "POST", "/api/admin/users/victim_{role}/state", {"state": "locked"}, ADMIN_ONLY
    ),
    "group-quota": Endpoint(
        "POST", "/api/admin/users/victim_{role}/group-quota", {"change": "+1"}, ADMIN_ONLY
    ),
    "storage-quota": Endpoint(
        "POST", "/api/admin/groups/lab/storage-quota", {"change": "+1GB"}, ADMIN_ONLY
    ),
}


@pytest.fixture
async def callers(admin, make_user, connect):
    owner = await make_user("owner")
    await owner.create_group("lab")
    clients = {"anonymous": await connect(), "admin": admin, "group-admin": owner}
    for role in ("read", "write"):
        clients[role] = await make_user(f"member_{role}")
    clients["non-member"] = await make_user("outsider")
    await make_user("extra")
    await owner.update_members(
        "lab",
        [
            Member(username="member_read", role=Role.READ),
            Member(username="member_write", role=Role.WRITE),
        ],
    )
    for role in ROLES:
        await admin.create_user(f"victim_{role.replace('-', '_')}", "pw")
    return clients


@pytest.mark.parametrize("name", sorted(ENDPOINTS))
async def test_endpoint_admits_exactly_its_callers(name, callers):
    """Allowed callers succeed; the anonymous get 401; the others 403, or 404 if hidden."""
    endpoint = ENDPOINTS[name]
    outcomes = {}
    for role in ROLES:
        client = callers[role]
        if name == "remove-members":  # every caller finds "extra" in the group
            await callers["admin"].update_members("lab", [Member(username="extra", role=Role.READ)])
        path, body = endpoint.request_for(role)
        headers = client._headers()
        response = await client._http.request(endpoint.method, path, json=body, headers=headers)
        outcomes[role] = response.status_code
        if response.status_code >= 400:
            assert set(response.json()) >= {"error", "message"}
        if name == "update-members" and response.status_code < 300:
            # take "extra" out again so the next caller's request is identical
            await callers["admin"].remove_members("lab", ["extra"])
    expected = {
        role: 200 if role in endpoint.allowed else endpoint.refusal_for(role) for role in ROLES
    }
    actual = {role: (200 if 200 <= code < 300 else code) for role, code in outcomes.items()}
    assert actual == expected
