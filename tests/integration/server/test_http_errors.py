"""Requests the router cannot place still get the one error shape, with words to act on."""

from __future__ import annotations

import pytest


async def _call(client, method: str, path: str) -> tuple[int, dict]:
    response = await client._http.request(method, path, headers=client._headers())
    return response.status_code, response.json()


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/api/tasks/not-a-uuid", "task_id"),
        ("/api/tasks/1234/explain", "task_id"),
        ("/api/workers/xyz", "worker_id"),
    ],
)
async def test_a_malformed_uuid_in_a_known_path_is_400_naming_it(admin, path, name):
    """A typo in a UUID is the caller's error (400), not a missing endpoint."""
    status, body = await _call(admin, "GET", path)
    assert (status, body["error"]) == (400, "invalid_input")
    assert body["message"].startswith(f"{name}: ")
    assert "is not a UUID" in body["message"]


async def test_an_unknown_path_is_404_naming_it(admin):
    """A path no route has says so and where the API is listed."""
    status, body = await _call(admin, "GET", "/api/no-such-thing")
    assert (status, body["error"]) == (404, "not_found")
    assert "/api/no-such-thing" in body["message"]
    assert "/schema" in body["message"]


async def test_a_wrong_method_is_405_naming_it(admin):
    """DELETE on the task collection is refused with the method and path."""
    status, body = await _call(admin, "DELETE", "/api/tasks")
    assert status == 405
    assert body["message"] == "DELETE is not allowed on /api/tasks"
