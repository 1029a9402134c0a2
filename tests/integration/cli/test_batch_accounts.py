"""`mitosis-tui --batch` commands for accounts and groups, run in-process against the app."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from mitosis_sdk.auth import CredentialCache
from mitosis_tui.commands.runner import run_batch
from mitosis_tui.config import ClientSettings

URL = "http://mitosis.test"


@pytest.fixture
def batch(transport, tmp_path):
    """``await batch("whoami", user=...)`` -> (exit code, stdout, stderr)."""
    cache = CredentialCache(tmp_path / "credentials.json")

    async def _run(*argv: str, user=None, password=None, as_json=False, stdin=None):
        out, err = io.StringIO(), io.StringIO()
        settings = ClientSettings(coordinator=URL, user=user, password=password)
        code = await run_batch(
            settings,
            list(argv),
            as_json=as_json,
            stdin=io.StringIO(stdin) if stdin is not None else None,
            stdout=out,
            stderr=err,
            cache=cache,
            transport=transport,
        )
        return code, out.getvalue(), err.getvalue()

    _run.cache = cache
    return _run


async def test_the_quick_start_sequence(batch):
    """The foundation's done-when sequence, as a script would run it."""
    assert (await batch("login", "mitosis_admin", "mitosis_admin"))[0] == 0
    assert (await batch("admin", "users", "create", "alice", "pw1"))[0] == 0
    assert (await batch("admin", "users", "create", "bob", "pw2"))[0] == 0
    assert (await batch("login", "alice", "pw1"))[0] == 0
    assert (await batch("groups", "create", "lab"))[0] == 0
    assert (await batch("groups", "update-user", "lab", "bob:read"))[0] == 0
    code, out, _ = await batch("groups", "get", "lab", "--json")
    assert code == 0
    group = json.loads(out)
    assert group["name"] == "lab"
    assert {m["username"]: m["role"] for m in group["members"]} == {"alice": "admin", "bob": "read"}
    code, out, _ = await batch("whoami")
    assert code == 0
    assert "alice" in out
    assert "lab:admin" in out


async def test_token_cache_file_is_private(batch):
    await batch("login", "mitosis_admin", "mitosis_admin")
    assert batch.cache.path.stat().st_mode & 0o777 == 0o600
    assert batch.cache.last() == (URL, "mitosis_admin")


async def test_exit_codes(batch):
    """2 usage, 3 auth, 4 not found/forbidden, 5 conflict (documented API)."""
    assert (await batch("whoami"))[0] == 3  # not logged in
    assert (await batch("login", "mitosis_admin", "wrong"))[0] == 3
    assert (await batch("frobnicate"))[0] == 2
    assert (await batch("groups", "update-user", "x", "bob"))[0] == 2  # missing :ROLE
    await batch("login", "mitosis_admin", "mitosis_admin")
    assert (await batch("groups", "get", "nope"))[0] == 4
    assert (await batch("admin", "users", "create", "mitosis_admin", "x"))[0] == 5
    assert (await batch("admin", "users", "group-quota", "mitosis_admin", "+x"))[0] == 2
    assert (await batch("admin", "users", "create", "al/ice", "x"))[0] == 2


async def test_negative_quota_edits_are_values_not_options(batch):
    await batch("login", "mitosis_admin", "mitosis_admin")
    await batch("groups", "create", "lab")
    code, out, err = await batch("admin", "groups", "storage-quota", "lab", "-500MB", as_json=True)
    assert code == 0, err
    assert json.loads(out)["storage_quota"] == 16 * 10**9 - 500 * 10**6
    code, out, _ = await batch("admin", "users", "group-quota", "mitosis_admin", "-1", "--json")
    assert json.loads(out)["group_quota"] == 7


async def test_password_from_flag_logs_in_when_needed(batch):
    """With -u and -p, commands log in by themselves (and again after a revocation)."""
    code, out, _ = await batch("whoami", user="mitosis_admin", password="mitosis_admin")
    assert code == 0
    assert "mitosis_admin" in out
    await batch("logout", user="mitosis_admin")
    code, _, _ = await batch("whoami", user="mitosis_admin", password="mitosis_admin")
    assert code == 0


async def test_script_mode_runs_every_line_and_reports_failures(batch):
    script = "\n".join(
        [
            "# set up",
            "login mitosis_admin mitosis_admin",
            "groups create lab",
            "groups get missing",
            "groups get lab",
        ]
    )
    code, out, err = await batch(stdin=script)
    assert code == 4
    assert "line 4 failed with status 4" in err
    assert "lab" in out


async def test_change_password_keeps_this_session(batch):
    await batch("login", "mitosis_admin", "mitosis_admin")
    await batch("admin", "users", "create", "alice", "pw1")
    await batch("login", "alice", "pw1")
    assert (await batch("users", "change-password", "pw1", "pw2"))[0] == 0
    assert (await batch("whoami"))[0] == 0
    assert (await batch("login", "alice", "pw1"))[0] == 3


async def test_admin_users_list_table_and_json(batch):
    await batch("login", "mitosis_admin", "mitosis_admin")
    code, out, _ = await batch("admin", "users", "list")
    assert code == 0
    assert out.splitlines()[0].split() == ["USER", "ADMIN", "STATE", "GROUPS", "CREATED"]
    code, out, _ = await batch("admin", "users", "list", "--json")
    assert [u["username"] for u in json.loads(out)] == ["mitosis_admin"]


def test_batch_path_never_imports_textual():
    """Scripts start fast and need no terminal: the batch path must not load Textual."""
    probe = (
        "import sys; from mitosis_tui.cli import main; "
        "main(['--batch', '--help-commands']); "
        "sys.exit(1 if 'textual' in sys.modules else 0)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
