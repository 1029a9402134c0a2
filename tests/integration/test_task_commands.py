"""``mitosis-tui --batch`` task and worker commands (FEATURES C2) against the real app, with
their output on stdout, diagnostics on stderr and documented exit codes."""

from __future__ import annotations

import io
import json
import uuid

import pytest

from mitosis_sdk.archives import pack_directory
from mitosis_sdk.auth import CredentialCache
from mitosis_sdk.schemas import Dependency, Member, Role
from mitosis_server.services.task_queries import MAX_DEPENDENTS
from mitosis_tui.commands import exitcodes
from mitosis_tui.commands.runner import run_batch
from mitosis_tui.config import ClientSettings
from tests.conftest import ADMIN
from tests.integration.server.fleet import spec, start_worker
from tests.integration.test_workflow_commands import _field


@pytest.fixture
def mito(transport, tmp_path):
    """``await mito("tasks", "query", user=...)`` → (exit code, stdout, stderr)."""

    async def run(*argv: str, user: str = "alice", password: str = "pw", as_json=False):
        out, err = io.StringIO(), io.StringIO()
        settings = ClientSettings(coordinator="http://mitosis.test", user=user, password=password)
        code = await run_batch(
            settings,
            list(argv),
            as_json=as_json,
            stdout=out,
            stderr=err,
            cache=CredentialCache(tmp_path / f"{user}.json"),
            transport=transport,
        )
        return code, out.getvalue(), err.getvalue()

    return run


@pytest.fixture
async def alice(make_user):
    client = await make_user("alice")
    await client.create_group("lab")
    return client


async def test_task_commands_submit_find_change_and_cancel(mito, alice, tmp_path):
    """submit prints the UUID; get/query show it; change, update-labels and cancel act."""
    code, out, _ = await mito(
        "tasks",
        "submit",
        "-t",
        "gpu",
        "-l",
        "exp1",
        "-e",
        "A=1,B=x y",
        "--timeout",
        "5m",
        "-p",
        "3",
        "--",
        "python",
        "-c",
        "print('--not-an-option')",
    )
    assert code == exitcodes.OK
    task = uuid.UUID(out.strip())
    code, out, _ = await mito("--json", "tasks", "get", str(task))
    shown = json.loads(out)
    assert shown["command"] == ["python", "-c", "print('--not-an-option')"]
    assert (shown["env"], shown["timeout"], shown["priority"]) == ({"A": "1", "B": "x y"}, 300, 3)
    code, out, err = await mito("tasks", "query", "-t", "gpu", "-s", "ready")
    assert str(task) in out
    assert "1 of 1 task(s)" in err
    assert (await mito("tasks", "query", "--count", "-l", "nope"))[1].strip() == "0"
    assert (await mito("tasks", "change", str(task), "-p", "9", "--", "echo", "new"))[0] == 0
    assert (await alice.get_task(task)).command == ["echo", "new"]
    await mito("tasks", "update-labels", str(task), "a,b", "c")
    assert (await alice.get_task(task)).labels == ["a", "b", "c"]
    code, out, _ = await mito("--json", "tasks", "cancel", str(task))
    assert json.loads(out)["cancelled"] == [str(task)]
    specs = tmp_path / "specs.json"
    specs.write_text(json.dumps([{"command": ["a"]}, {"command": ["b"], "group": "nowhere"}]))
    code, out, err = await mito("tasks", "submit-many", "-f", str(specs))
    assert code == exitcodes.NOT_FOUND
    assert "1 of 2 specs were refused" in err
    code, _, err = await mito("tasks", "cancel-many", "-s", "ready")
    assert (code, "cancelled 1 task(s)" in err) == (0, True)


async def test_tasks_get_shows_the_dependents_with_their_conditions(mito, alice):
    """`tasks get` on an upstream lists each task waiting on it as CONDITION:UUID, in
    submission order; --json gives them with the total (T6)."""
    up = (await alice.submit_task(spec("up"))).uuid
    ok = (await mito("tasks", "submit", "--after-ok", str(up), "--", "ok"))[1].strip()
    anyway = (await mito("tasks", "submit", "--after-any", str(up), "--", "any"))[1].strip()
    _, out, _ = await mito("tasks", "get", str(up))
    assert _field(out, "dependents") == f"afterok:{ok},afterany:{anyway}"
    _, out, _ = await mito("tasks", "get", ok)
    assert (_field(out, "depends on"), _field(out, "dependents")) == (f"afterok:{up}", "-")
    shown = json.loads((await mito("--json", "tasks", "get", str(up)))[1])
    assert shown["dependents"] == [
        {"task": ok, "condition": "afterok"},
        {"task": anyway, "condition": "afterany"},
    ]
    assert shown["dependents_total"] == 2


async def test_tasks_get_says_how_many_dependents_it_did_not_list(mito, alice):
    """Past the coordinator's bound, the human `dependents` line ends with `+N more`."""
    up = await alice.submit_task(spec("up"))
    waiting = [spec("d", depends_on=[Dependency(task=up.uuid)])] * (MAX_DEPENDENTS + 2)
    await alice.submit_tasks(waiting)
    _, out, _ = await mito("tasks", "get", str(up.uuid))
    listed = _field(out, "dependents").split(",")
    assert (len(listed), listed[-1]) == (MAX_DEPENDENTS + 1, "+2 more")


async def test_tasks_wait_exits_with_the_tasks_outcome(mito, alice, transport):
    """0 when every task completed; 1 when one failed, was cancelled, or time ran out."""
    good, bad, idle = (await alice.submit_tasks([spec("a"), spec("b"), spec("c")])).results
    worker = await start_worker(alice, transport, slots=2)
    first, second = await worker.fetch(max_tasks=2)
    await worker.finish(first)
    await worker.finish(second, exit_code=1)
    ok, failed = str(good.task.uuid), str(bad.task.uuid)
    assert (await mito("tasks", "wait", ok))[0] == exitcodes.OK
    code, _, err = await mito("tasks", "wait", ok, failed)
    assert (code, "1 of 2 task(s) did not complete" in err) == (exitcodes.FAILED, True)
    code, _, err = await mito("tasks", "wait", str(idle.task.uuid), "--timeout", "0.3s")
    assert (code, "gave up" in err) == (exitcodes.FAILED, True)


async def test_worker_commands_show_and_manage_workers(mito, alice, make_user, transport):
    """query/get, tags, labels, roles, drain/resume, cancel (graceful and --force)."""
    await make_user("bob")
    await alice.update_members("lab", [Member(username="bob", role=Role.WRITE)])
    worker = await start_worker(alice, transport, tags=["cpu"])
    w = worker.uuid
    code, out, _ = await mito("workers", "query")
    assert (code, w in out) == (0, True)
    assert (await mito("workers", "update-tags", w, "gpu", "cuda"))[0] == 0
    assert (await mito("workers", "update-labels", w, "rack1"))[0] == 0
    assert (await mito("workers", "update-roles", w, "lab:admin", "bob"))[0] == exitcodes.NOT_FOUND
    assert (await mito("workers", "update-roles", w, "lab:admin"))[0] == 0
    code, out, _ = await mito("--json", "workers", "get", w)
    shown = json.loads(out)
    assert (shown["tags"], shown["labels"]) == (["cuda", "gpu"], ["rack1"])
    assert {(g["group"], g["role"]) for g in shown["grants"]} == {
        ("alice", "admin"),
        ("lab", "admin"),
    }
    assert (await mito("workers", "remove-roles", w, "lab"))[0] == 0
    assert (await mito("workers", "drain", w))[0] == 0
    assert (await mito("workers", "resume", w))[0] == 0
    assert (await mito("workers", "get", w, user="bob"))[0] == exitcodes.NOT_FOUND
    assert (await mito("workers", "cancel", w))[0] == 0
    assert (await worker.heartbeat()).shutdown == "graceful"
    assert (await mito("workers", "cancel-many", "-t", "gpu", "--force"))[0] == 0
    assert (await worker.heartbeat()).shutdown == "force"
    assert (await mito("admin", "workers", "cancel", w))[0] == exitcodes.NOT_FOUND
    code, _, _ = await mito(
        "admin", "workers", "cancel", w, "--force", user=ADMIN[0], password=ADMIN[1]
    )
    assert code == 0


BAD_COMMANDS = [
    (["tasks", "submit", "-g", "lab"], exitcodes.USAGE),  # no command after --
    (["tasks", "submit", "--timeout", "10x", "--", "x"], exitcodes.USAGE),
    (["tasks", "submit", "-e", "NOEQUALS", "--", "x"], exitcodes.USAGE),
    (["tasks", "get", "not-a-uuid"], exitcodes.USAGE),
    (["tasks", "get", "6f1e0a4c-3b7e-4d5a-9a3e-2f1c0b9d8e7f"], exitcodes.NOT_FOUND),
    (["tasks", "cancel-many"], exitcodes.USAGE),
    (["tasks", "query", "-s", "sleeping"], exitcodes.USAGE),
    (["tasks", "submit", "-g", "nowhere", "--", "x"], exitcodes.NOT_FOUND),
    (
        ["workers", "update-roles", "6f1e0a4c-3b7e-4d5a-9a3e-2f1c0b9d8e7f", "lab:boss"],
        exitcodes.USAGE,
    ),
]


async def test_bad_commands_exit_with_their_documented_status(mito, alice):
    """Usage errors exit 2, unknown or hidden things 4; each says why on stderr."""
    outcomes = {}
    for argv, _ in BAD_COMMANDS:
        code, _, err = await mito(*argv)
        outcomes[" ".join(argv)] = (code, err.startswith("error:"))
    assert outcomes == {" ".join(argv): (status, True) for argv, status in BAD_COMMANDS}


async def test_logs_fall_back_to_the_archived_std_log(mito, alice, transport, tmp_path):
    """A finished task with no live line kept: `tasks logs` prints its std-log artifact, one
    stream at a time, and says so on stderr."""
    worker = await start_worker(alice, transport, groups={"alice": Role.ADMIN})
    submitted = await alice.submit_task(spec("true", terminal_output=True))
    held = await worker.fetch_one()
    folder = tmp_path / "std-log"
    folder.mkdir()
    (folder / "stdout.log").write_text("out one\nout two\n")
    (folder / "stderr.log").write_text("err one\n")
    archive = tmp_path / "std-log.tar.gz"
    pack_directory(folder, archive, "std-log")
    await worker.client.upload_attempt_artifact(
        worker.uuid, held.task, held.attempt, "std-log", archive
    )
    await worker.finish(held)
    code, out, err = await mito("tasks", "logs", str(submitted.uuid))
    assert (code, out) == (0, "out one\nout two\n")
    assert "archived std-log" in err
    code, out, _ = await mito("tasks", "logs", str(submitted.uuid), "--stderr")
    assert (code, out) == (0, "err one\n")
