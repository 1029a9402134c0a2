"""The Groups pane's Files tab on the real coordinator (in-process, local object store):
folders, upload and download with the bytes intact, delete, pages, and roles."""

from __future__ import annotations

import os

from textual.widgets import Checkbox, Input

from mitosis_sdk.schemas import Member, Role
from mitosis_tui.palette import palette_actions
from mitosis_tui.screens.confirm import ConfirmScreen
from mitosis_tui.screens.file_forms import DownloadForm, UploadForm
from mitosis_tui.widgets import attachments_browser
from mitosis_tui.widgets.attachments_browser import AttachmentsBrowser
from mitosis_tui.widgets.transfer_list import Transfer
from tests.tui.conftest import SIZE, screen_text, settle, until
from tests.tui.test_groups import rows, select_group

SLOW = 30.0  # megabytes through the in-process coordinator on a busy machine


async def lab_with_files(make_user, tmp_path) -> None:
    """alice admins lab (bob reads); lab holds data/raw/a.bin, data/c.txt and readme."""
    alice = await make_user("alice")
    await make_user("bob")
    await alice.create_group("lab")
    await alice.update_members("lab", [Member(username="bob", role=Role.READ)])
    source = tmp_path / "seed.bin"
    for key, size in (("data/raw/a.bin", 10), ("data/c.txt", 3), ("readme", 1)):
        source.write_bytes(b"x" * size)
        await alice.upload_attachment("lab", source, key)


async def open_files(pilot) -> AttachmentsBrowser:
    pane = await select_group(pilot, "lab")
    await pilot.press("f")
    browser = pane.browser
    await until(pilot, lambda: browser.page is not None, what="the files")
    await settle(pilot)
    return browser


def names(browser: AttachmentsBrowser) -> list[str]:
    return [row[0] for row in rows(browser.table)]


async def enter(pilot, browser: AttachmentsBrowser, name: str, prefix: str) -> None:
    browser.table.move_cursor(row=names(browser).index(name))
    await pilot.press("enter")
    await until(pilot, lambda: browser.page.prefix == prefix, what=f"folder {prefix!r}")
    await settle(pilot)


def notes(app) -> str:
    return "\n".join(n.message for n in app._notifications)


async def test_folders_open_and_close(make_tui, make_user, remember, tmp_path):
    """Sub-folders first with their totals; Enter opens, '..' and Backspace go back up."""
    await lab_with_files(make_user, tmp_path)
    await remember("alice")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        browser = await open_files(pilot)
        assert rows(browser.table)[0][:2] == ["data/", "13B"]
        assert names(browser) == ["data/", "readme"]
        await enter(pilot, browser, "data/", "data/")
        assert names(browser) == ["..", "raw/", "c.txt"]
        assert "lab:/data/" in screen_text(app)
        await enter(pilot, browser, "raw/", "data/raw/")
        assert names(browser) == ["..", "a.bin"]
        await enter(pilot, browser, "..", "data/")
        await pilot.press("backspace")
        await until(pilot, lambda: browser.page.prefix == "", what="the top")


async def test_upload_then_download_gives_back_the_same_bytes(
    make_tui, make_user, remember, tmp_path
):
    """u uploads into the current folder under the file's name; s saves it; bytes match."""
    await lab_with_files(make_user, tmp_path)
    local = tmp_path / "local"
    local.mkdir()
    original = local / "weights.bin"
    original.write_bytes(os.urandom(3 * 2**20 + 5))
    await remember("alice")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        browser = await open_files(pilot)
        await enter(pilot, browser, "data/", "data/")
        await pilot.press("u")
        await until(pilot, lambda: isinstance(app.screen, UploadForm), what="upload form")
        assert app.screen.query_one("#upload-key", Input).value == "data/"
        app.screen.query_one("#upload-path", Input).value = str(original)
        await pilot.pause()
        assert "stored as data/weights.bin" in screen_text(app)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "weights.bin" in names(browser), SLOW, "the upload")
        await settle(pilot)
        assert "Uploaded weights.bin to lab as data/weights.bin" in notes(app)
        assert "3.1MB of 16.0GB" in screen_text(app)  # the storage bar followed

        browser.table.move_cursor(row=names(browser).index("weights.bin"))
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, DownloadForm), what="download form")
        copy = tmp_path / "copy.bin"
        app.screen.query_one("#download-path", Input).value = str(copy)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "Saved data/weights.bin" in notes(app), SLOW, "the download")
    assert copy.read_bytes() == original.read_bytes()


async def test_a_folder_is_saved_whole(make_tui, make_user, remember, tmp_path):
    """s on a folder saves every file below it, by its path inside the folder."""
    await lab_with_files(make_user, tmp_path)
    await remember("alice")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        await open_files(pilot)
        await pilot.press("s")  # the cursor is on data/
        await until(pilot, lambda: isinstance(app.screen, DownloadForm), what="download form")
        app.screen.query_one("#download-path", Input).value = str(tmp_path / "out")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "Saved 2 file(s) from data/" in notes(app), what="saved")
    assert (tmp_path / "out" / "raw" / "a.bin").read_bytes() == b"x" * 10
    assert (tmp_path / "out" / "c.txt").read_bytes() == b"xxx"


async def test_forms_check_paths_and_keys_before_sending(make_tui, make_user, remember, tmp_path):
    """A missing file, a key with '..' and an existing target are refused in the form."""
    await lab_with_files(make_user, tmp_path)
    existing = tmp_path / "there.txt"
    existing.write_text("keep me")
    await remember("alice")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        browser = await open_files(pilot)
        await pilot.press("u")
        await until(pilot, lambda: isinstance(app.screen, UploadForm), what="upload form")
        error = app.screen.query_one("#form-error")
        app.screen.query_one("#upload-path", Input).value = str(tmp_path / "nope")
        await pilot.press("ctrl+s")
        assert "does not exist" in str(error.render())
        app.screen.query_one("#upload-path", Input).value = str(existing)
        app.screen.query_one("#upload-key", Input).value = "../up"
        await pilot.press("ctrl+s")
        assert "'..'" in str(error.render())
        await pilot.press("escape")
        browser.table.move_cursor(row=names(browser).index("readme"))
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, DownloadForm), what="download form")
        app.screen.query_one("#download-path", Input).value = str(existing)
        await pilot.press("ctrl+s")
        assert "tick 'Replace existing files'" in str(app.screen.query_one("#form-error").render())
        app.screen.query_one("#download-replace", Checkbox).value = True
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "Saved readme" in notes(app), what="replaced")
    assert existing.read_bytes() == b"x"


async def test_delete_a_file_and_a_folder_after_confirming(
    make_tui, make_user, remember, tmp_path, connect
):
    """d asks (a folder: how many files), then deletes; the group's usage drops."""
    await lab_with_files(make_user, tmp_path)
    await remember("alice")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        browser = await open_files(pilot)
        browser.table.move_cursor(row=names(browser).index("readme"))
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        assert "Delete readme (1B) from lab?" in app.screen.question
        await pilot.press("y")
        await until(pilot, lambda: names(browser) == ["data/"], what="readme gone")
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        assert "Delete the folder data/ of lab: 2 file(s), 13B?" in app.screen.question
        await pilot.press("y")
        await until(pilot, lambda: names(browser) == [], what="all gone")
        assert "No files yet." in screen_text(app)
    alice = await connect("alice", "pw")
    assert (await alice.get_group("lab")).storage_used == 0


async def test_a_reader_browses_and_saves_but_cannot_change_files(
    make_tui, make_user, remember, tmp_path
):
    """bob (read) sees the files and why u and d do nothing for him; s still saves."""
    await lab_with_files(make_user, tmp_path)
    await remember("bob")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        browser = await open_files(pilot)
        note = str(browser.query_one("#files-note").render())
        assert "you have read access: upload and delete need write" in note
        await pilot.press("u")
        await pilot.press("d")
        await pilot.pause()
        assert not isinstance(app.screen, UploadForm | ConfirmScreen)
        browser.table.move_cursor(row=names(browser).index("readme"))
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, DownloadForm), what="download form")


async def test_big_folders_come_a_page_at_a_time(
    make_tui, make_user, remember, tmp_path, connect, monkeypatch
):
    """] and [ turn pages; the note says which entries are shown of how many."""
    monkeypatch.setattr(attachments_browser, "PAGE_SIZE", 2)
    await lab_with_files(make_user, tmp_path)
    alice = await connect("alice", "pw")
    for key in ("data/d.txt", "data/e.txt"):
        await alice.upload_attachment("lab", tmp_path / "seed.bin", key)
    await remember("alice")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        browser = await open_files(pilot)
        await enter(pilot, browser, "data/", "data/")
        assert names(browser) == ["..", "raw/", "c.txt"]
        assert "1–2 of 4 · [ ] pages" in screen_text(app)
        await pilot.press("right_square_bracket")
        await until(pilot, lambda: names(browser) == ["..", "d.txt", "e.txt"], what="page 2")
        assert "3–4 of 4" in screen_text(app)
        await pilot.press("right_square_bracket")
        assert "No more pages" in notes(app)
        await pilot.press("left_square_bracket")
        await until(pilot, lambda: "c.txt" in names(browser), what="the first page")


def test_progress_is_counted_and_drawn_without_a_message_per_chunk():
    """The SDK's callback only adds (and subtracts on a retry); the line shows the share."""
    transfer = Transfer(1, "↓", "data/big.bin", 4_000_000)
    for _ in range(3):
        transfer.advance(1_000_000)
    transfer.advance(-1_000_000)  # a retry sends a part again
    transfer.advance(1_000_000)
    line = transfer.line(80).plain
    assert line.startswith("↓ ████████████░░░░  75% 3.0MB/4.0MB data/big.bin")


async def test_the_palette_reaches_file_actions_from_the_members_tab(
    make_tui, make_user, remember, tmp_path
):
    """Ctrl+P lists the Files keys; choosing Upload shows the Files tab and opens the form."""
    await lab_with_files(make_user, tmp_path)
    await remember("alice")
    app = make_tui()
    async with app.run_test(size=SIZE) as pilot:
        pane = await select_group(pilot, "lab")
        actions = {action.title: action for action in palette_actions(app)}
        assert "Workers: Drain: finish running tasks, take no new ones" in actions
        actions["Groups: Upload a local file into this folder"].run()
        await until(pilot, lambda: isinstance(app.screen, UploadForm), what="upload form")
        assert pane.details.files_active
