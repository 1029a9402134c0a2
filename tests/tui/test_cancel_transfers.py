"""Cancelling transfers on the real coordinator: an artifact download (Tasks pane, ``a``),
and attachment uploads and downloads in the Groups pane's Files tab.

The bytes go through :class:`~tests.tui.conftest.HeldLink`, a real link to the store that
lets the first chunk through and holds the rest, so each transfer is caught with bytes in
flight. After a cancel the screen says so, no file (not even a scratch part) is left
locally, and an aborted upload leaves nothing registered and gives the quota back.
"""

from __future__ import annotations

import os

from textual.widgets import Input

from mitosis_sdk.schemas import TaskSpec
from mitosis_tui.screens.file_forms import DownloadForm, UploadForm
from mitosis_tui.widgets.transfer_list import TransferRow
from tests.tui.conftest import (
    SIZE,
    HeldLink,
    download_artifact,
    open_tasks,
    screen_text,
    until,
)
from tests.tui.fleet.test_attachments import enter, lab_with_files, names, notes, open_files

BIG = 3 * 2**20 + 7  # several chunks: the held link stops it after the first


def footer(app) -> str:
    return screen_text(app).splitlines()[-1]


def local_files(folder) -> list[str]:
    """Every file left in ``folder``, hidden scratch parts included."""
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


async def test_esc_cancels_an_artifact_download_and_no_file_is_left(
    make_tui, remember, lab, tmp_path
):
    """While a download runs Esc cancels it (the footer says so) rather than closing; the
    screen says it was cancelled, the folder stays empty; then Esc closes."""
    task = await lab.submit_task(TaskSpec(command=["true"], group="lab"))
    blob = tmp_path / "result.tar.gz"
    blob.write_bytes(os.urandom(BIG))
    await lab.upload_artifact(task.uuid, "result", blob)
    into = tmp_path / "into"
    into.mkdir()
    link = HeldLink()
    await remember("alice")
    app = make_tui(transfer_transport=link)
    async with app.run_test(size=SIZE) as pilot:
        await open_tasks(pilot)
        screen = await download_artifact(pilot, into)
        await until(pilot, link.moving.is_set, what="bytes in flight")
        await until(pilot, lambda: "esc Cancel download" in footer(app), what="the key")
        await pilot.press("escape")
        await until(pilot, lambda: screen.transfer is None, what="the download stopped")
        assert "Download cancelled" in screen_text(app)
        assert app.screen is screen
        assert local_files(into) == []
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is not screen, what="closed")


async def big_attachment(connect, tmp_path, key: str) -> None:
    alice = await connect("alice", "pw")
    blob = tmp_path / "big.bin"
    blob.write_bytes(os.urandom(BIG))
    await alice.upload_attachment("lab", blob, key)


async def save_as(pilot, browser, name: str, dest, *, replace: bool = False) -> None:
    """s on ``name``, the form filled in with ``dest``, sent."""
    app = pilot.app
    browser.table.move_cursor(row=names(browser).index(name))
    await pilot.press("s")
    await until(pilot, lambda: isinstance(app.screen, DownloadForm), what="download form")
    app.screen.query_one("#download-path", Input).value = str(dest)
    app.screen.query_one("#download-replace").value = replace
    await pilot.press("ctrl+s")


async def test_the_cancel_button_stops_saving_an_attachment(
    make_tui, make_user, connect, remember, tmp_path
):
    """The transfer line's Cancel button: the partial file goes, the file that was there
    before stays as it was, and the notification says so."""
    await lab_with_files(make_user, tmp_path)
    await big_attachment(connect, tmp_path, "data/big.bin")
    out = tmp_path / "out"
    out.mkdir()
    (out / "big.bin").write_bytes(b"old")
    link = HeldLink()
    await remember("alice")
    app = make_tui(transfer_transport=link)
    async with app.run_test(size=SIZE) as pilot:
        browser = await open_files(pilot)
        await enter(pilot, browser, "data/", "data/")
        await save_as(pilot, browser, "big.bin", out / "big.bin", replace=True)
        await until(pilot, link.moving.is_set, what="bytes in flight")
        await until(pilot, lambda: app.screen.query(TransferRow), what="the transfer line")
        await pilot.click(".transfer-cancel")
        await until(pilot, lambda: not browser.transfers.active, what="the transfer stopped")
        assert f"Saving data/big.bin cancelled: {out / 'big.bin'} was left as it was" in notes(app)
        assert not app.screen.query(TransferRow)
    assert local_files(out) == ["big.bin"]
    assert (out / "big.bin").read_bytes() == b"old"


async def test_esc_cancels_an_upload_and_the_coordinator_keeps_nothing(
    make_tui, make_user, connect, remember, tmp_path
):
    """Esc in the Files tab cancels the upload (the footer offers it; Esc does not leave the
    pane then): no attachment appears, and the group's storage use is what it was."""
    await lab_with_files(make_user, tmp_path)
    alice = await connect("alice", "pw")
    used = (await alice.get_group("lab")).storage_used
    local = tmp_path / "weights.bin"
    local.write_bytes(os.urandom(BIG))
    link = HeldLink()
    await remember("alice")
    app = make_tui(transfer_transport=link)
    async with app.run_test(size=SIZE) as pilot:
        browser = await open_files(pilot)
        await pilot.press("u")
        await until(pilot, lambda: isinstance(app.screen, UploadForm), what="upload form")
        app.screen.query_one("#upload-path", Input).value = str(local)
        await pilot.press("ctrl+s")
        await until(pilot, link.moving.is_set, what="bytes in flight")
        await until(pilot, lambda: "esc Cancel" in footer(app), what="the key in the footer")
        await pilot.press("escape")
        await until(pilot, lambda: not browser.transfers.active, what="the transfer stopped")
        assert "Upload of weights.bin cancelled: nothing was stored in lab." in notes(app)
        assert app.main_screen.tabs.active == "groups"
        assert "weights.bin" not in names(browser)
    keys = [a.key for a in (await alice.query_attachments("lab")).attachments]
    assert "weights.bin" not in keys
    assert (await alice.get_group("lab")).storage_used == used


async def test_esc_stops_saving_a_folder_between_or_within_files(
    make_tui, make_user, connect, remember, tmp_path
):
    """Saving a folder is one transfer job: a cancel stops it whole, not just its current
    file; files saved before stay, the one in progress is not written."""
    await lab_with_files(make_user, tmp_path)
    await big_attachment(connect, tmp_path, "data/big.bin")
    link = HeldLink()
    await remember("alice")
    app = make_tui(transfer_transport=link)
    async with app.run_test(size=SIZE) as pilot:
        browser = await open_files(pilot)
        await save_as(pilot, browser, "data/", tmp_path / "out")
        await until(pilot, link.moving.is_set, what="bytes in flight")
        await until(pilot, lambda: browser.transfers.active, what="a transfer line")
        await pilot.press("escape")
        await until(pilot, lambda: "Saving data/ cancelled after" in notes(app), what="said")
        await until(pilot, lambda: not browser.transfers.active, what="the job stopped")
    left = local_files(tmp_path / "out")
    assert not [name for name in left if name.endswith(".part")]
    assert "big.bin" not in left
