"""``mitosis-tui --batch`` workflow commands (FEATURES C2, T2, T6, T8, T11, T12): submit with
dependencies, retries and arrays, rerun and explain, against the real app."""

from __future__ import annotations

import io
import json
import uuid

import pytest

from mitosis_sdk.auth import CredentialCache
from mitosis_tui.commands import exitcodes
from mitosis_tui.commands.runner import run_batch
from mitosis_tui.config import ClientSettings
from tests.integration.server.fleet import spec, start_worker


@pytest.fixture
def mito(transport, tmp_path):
    """``await mito("tasks", "query", as_json=…)`` as alice → (exit code, stdout, stderr)."""

    async def run(*argv: str, as_json: bool = False):
        out, err = io.StringIO(), io.StringIO()
        settings = ClientSettings(coordinator="http://mitosis.test", user="alice", password="pw")
        code = await run_batch(
            settings,
            list(argv),
            as_json=as_json,
            stdout=out,
            stderr=err,
            cache=CredentialCache(tmp_path / "alice.json"),
            transport=transport,
        )
        return code, out.getvalue(), err.getvalue()

    return run


@pytest.fixture
async def alice(make_user):
    return await make_user("alice")


async def test_workflow_commands(mito, alice):
    """--after-ok/--retries make a pending task, --array a whole array, rerun a linked copy,
    explain names the rule; submit (of a task or an array) warns on stderr when no worker
    could take it."""
    code, out, err = await mito("tasks", "submit", "-t", "gpu", "--", "up")
    assert code == 0
    assert "NoWorker" in err
    up = out.strip()
    code, out, _ = await mito(
        "tasks", "submit", "--after-ok", up, "--retries", "2", "--retry-delay", "5s", "--", "down"
    )
    assert code == 0
    down = await alice.get_task(out.strip())
    assert (down.state, down.retries, down.depends_on[0].condition) == ("pending", 2, "afterok")
    code, out, err = await mito("tasks", "submit", "--array", "0-9:2%2", "--", "sweep")
    assert code == 0
    assert "NoWorker" in err
    array = uuid.UUID(out.strip())
    code, out, _ = await mito("tasks", "query", "--array", str(array), "--count")
    assert out.strip() == "5"
    code, out, _ = await mito("tasks", "cancel-many", "--array", str(array))
    assert code == 0
    code, out, _ = await mito("tasks", "rerun", up, "-p", "3", "--", "up", "again")
    assert code == 0
    copy = await alice.get_task(out.strip())
    assert (copy.command, copy.priority, str(copy.rerun_of)) == (["up", "again"], 3, up)
    code, out, err = await mito("tasks", "explain", str(down.uuid))
    assert code == 0
    assert "Dependency" in err
    for bad in (["--array", "5-1"], ["--array", "0-1000000"], ["--array", "0-3%0"]):
        code, _, err = await mito("tasks", "submit", *bad, "--", "x")
        assert code == exitcodes.USAGE, err
    for retries in ("101", "-1"):
        code, _, err = await mito("tasks", "submit", "--retries", retries, "--", "x")
        assert (code, "retries" in err) == (exitcodes.USAGE, True)
    code, _, err = await mito("tasks", "submit", "--after", "not-a-uuid", "--", "x")
    assert code == exitcodes.USAGE


async def test_every_dependency_flag_and_several_per_task(mito, alice):
    """--after, --after-ok, --after-not-ok and --after-any (repeated or comma-separated) each
    become their condition on one task; --json answers carry the new task (C2, T6)."""
    ups = [(await alice.submit_task(spec(f"up{i}"))).uuid for i in range(5)]
    code, out, err = await mito(
        "tasks",
        "submit",
        "--after",
        str(ups[0]),
        "--after-ok",
        f"{ups[1]},{ups[2]}",
        "--after-not-ok",
        str(ups[3]),
        "--after-any",
        str(ups[4]),
        "--",
        "down",
        as_json=True,
    )
    assert code == 0, err
    submitted = json.loads(out)
    assert submitted["state"] == "pending"
    code, out, _ = await mito("tasks", "get", submitted["uuid"], as_json=True)
    assert [(d["task"], d["condition"]) for d in json.loads(out)["depends_on"]] == [
        (str(ups[0]), "after"),
        (str(ups[1]), "afterok"),
        (str(ups[2]), "afterok"),
        (str(ups[3]), "afternotok"),
        (str(ups[4]), "afterany"),
    ]
    code, out, _ = await mito("tasks", "explain", submitted["uuid"], as_json=True)
    assert json.loads(out)["summary"].startswith("Dependency: waiting for")
    code, out, _ = await mito("tasks", "submit", "--array", "1,5,7", "--", "x", as_json=True)
    array = json.loads(out)
    assert (array["count"], array["throttle"], len(array["tasks"])) == (3, None, 3)
    indexes = [(await alice.get_task(t)).array_index for t in array["tasks"]]
    assert indexes == [1, 5, 7]
    code, out, _ = await mito("tasks", "rerun", str(ups[0]), as_json=True)
    assert (await alice.get_task(json.loads(out)["uuid"])).rerun_of == ups[0]


async def test_tasks_get_shows_attempts_and_both_links(mito, alice, transport):
    """A retried task lists every attempt with its worker and outcome; a downstream task and
    its writer show their upstream / downstream links (T7, T8)."""
    task = await alice.submit_task(spec("flaky", retries=1))
    worker = await start_worker(alice, transport)
    first = await worker.fetch_one()
    await worker.finish(first, exit_code=3)
    second = await worker.fetch_one()
    reply = await worker.client.submit_downstream(worker.uuid, task.uuid, 2, '{"command": ["n"]}')
    await worker.finish(second)
    _, out, _ = await mito("tasks", "get", str(task.uuid))
    shown = _field(out, "attempts").split("; ")
    assert [a.split()[:3] for a in shown] == [["#1", "on", worker.uuid], ["#2", "on", worker.uuid]]
    assert shown[0].endswith("→ failed (nonzero_exit)")
    assert shown[1].endswith("→ completed")
    child = reply.tasks[0].uuid
    assert _field(out, "downstream") == str(child)
    _, out, _ = await mito("tasks", "get", str(child))
    assert _field(out, "upstream") == str(task.uuid)


def _field(out: str, name: str) -> str:
    """The value of one ``name  value`` line of ``tasks get``."""
    for line in out.splitlines():
        if line.startswith(f"{name}  "):
            return line[len(name) :].strip()
    raise AssertionError(f"no {name!r} line in:\n{out}")
