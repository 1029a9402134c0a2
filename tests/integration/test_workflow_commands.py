"""``mitosis-tui --batch`` workflow commands (FEATURES C2, T2, T6, T8, T11, T12): submit with
dependencies, retries and arrays, rerun and explain, against the real app."""

from __future__ import annotations

import io
import uuid

import pytest

from mitosis_sdk.auth import CredentialCache
from mitosis_tui.commands import exitcodes
from mitosis_tui.commands.runner import run_batch
from mitosis_tui.config import ClientSettings


@pytest.fixture
def mito(transport, tmp_path):
    """``await mito("tasks", "query")`` as alice → (exit code, stdout, stderr)."""

    async def run(*argv: str):
        out, err = io.StringIO(), io.StringIO()
        settings = ClientSettings(coordinator="http://mitosis.test", user="alice", password="pw")
        code = await run_batch(
            settings,
            list(argv),
            as_json=False,
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
    explain names the rule; submit warns on stderr when no worker could take it."""
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
    code, out, _ = await mito("tasks", "submit", "--array", "0-9:2%2", "--", "sweep")
    assert code == 0
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
    code, _, err = await mito("tasks", "submit", "--retries", "101", "--", "x")
    assert code == exitcodes.USAGE
