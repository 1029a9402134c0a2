"""What can be done to tasks, wherever tasks are shown: the Tasks pane and Task details.

:class:`TaskActions` is a mixin for a widget or screen that names a focused task and,
optionally, a selection (``target_uuids``). Actions act on the selection when there is one,
else on the focused task; destructive ones ask first. After a change the host's
:meth:`TaskActions.tasks_changed` runs (the pane re-reads its window, details re-read the
task); the live stream would bring the change anyway, this just makes it immediate.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from textual.binding import Binding

from mitosis_sdk.schemas import TaskInfo
from mitosis_tui.screens.artifacts import ArtifactsScreen
from mitosis_tui.screens.confirm import ConfirmScreen
from mitosis_tui.screens.logs import LogsScreen
from mitosis_tui.screens.task_forms import LabelsForm
from mitosis_tui.widgets.task_columns import short_id
from mitosis_tui.workers import api_work

if TYPE_CHECKING:
    from mitosis_tui.app import MitosisApp

__all__ = ["TASK_BINDINGS", "TaskActions"]

TASK_BINDINGS = [
    Binding("l", "logs", "Logs", tooltip="Follow the task's output"),
    Binding("c", "cancel_tasks", "Cancel", tooltip="Cancel the selected (or focused) tasks"),
    # The rest are not in the footer (80 columns hold only so many): ? help and the palette
    # list them.
    Binding("r", "rerun", "Re-run", show=False, tooltip="Submit a copy of each task again"),
    Binding(
        "e",
        "edit_labels",
        "Labels",
        show=False,
        tooltip="Replace the labels of the tasks",
    ),
    Binding(
        "a", "artifacts", "Artifacts", show=False, tooltip="List and download the task's artifacts"
    ),
    Binding("y", "copy_uuid", "Copy", show=False, tooltip="Copy the UUIDs to the clipboard"),
]


def _count(n: int) -> str:
    return f"{n} task" if n == 1 else f"{n} tasks"


class TaskActions:
    """Mixin: ``focused_task`` and ``target_uuids`` come from the host."""

    def focused_task(self) -> TaskInfo | None:
        raise NotImplementedError

    def target_uuids(self) -> list[uuid.UUID]:
        task = self.focused_task()
        return [task.uuid] if task is not None else []

    def tasks_changed(self, new: uuid.UUID | None = None) -> None:
        """Tasks were changed by an action (``new``: a task it submitted)."""

    @property
    def mitosis(self) -> MitosisApp:
        return cast("MitosisApp", self.app)  # type: ignore[attr-defined]

    def _confirm(self, question: str, yes: str, then: Callable[[], object]) -> None:
        def answered(confirmed: bool | None) -> None:
            if confirmed:
                then()

        self.mitosis.push_screen(ConfirmScreen(question, yes), answered)

    def _targets_or_say(self) -> list[uuid.UUID]:
        targets = self.target_uuids()
        if not targets:
            self.mitosis.notify("No task here.", severity="warning")
        return targets

    # -- logs, artifacts, copy -----------------------------------------------------------

    def action_logs(self) -> None:
        task = self.focused_task()
        if task is not None:
            self.mitosis.push_screen(LogsScreen(task.uuid, task))

    def action_artifacts(self) -> None:
        task = self.focused_task()
        if task is not None:
            self.mitosis.push_screen(ArtifactsScreen(task.uuid))

    def action_copy_uuid(self) -> None:
        targets = self._targets_or_say()
        if targets:
            self.mitosis.copy_to_clipboard("\n".join(str(t) for t in targets))
            what = str(targets[0]) if len(targets) == 1 else f"{len(targets)} UUIDs"
            self.mitosis.notify(f"Copied {what}", markup=False)

    # -- cancel --------------------------------------------------------------------------

    def action_cancel_tasks(self) -> None:
        targets = self._targets_or_say()
        if not targets:
            return
        what = short_id(targets[0]) if len(targets) == 1 else _count(len(targets))
        question = f"Cancel {what}? Running tasks are killed."
        self._confirm(question, "Cancel", lambda: self.cancel_tasks(targets))

    @api_work(group="task-action")
    async def cancel_tasks(self, targets: list[uuid.UUID]) -> None:
        reply = await self.mitosis.call(lambda c: c.cancel_tasks(targets))
        text = f"Cancelled {_count(len(reply.cancelled))}"
        if reply.unchanged:
            text += f"; {_count(len(reply.unchanged))} had already ended"
        self.mitosis.notify(text + ".")
        self.tasks_changed()

    # -- re-run --------------------------------------------------------------------------

    def action_rerun(self) -> None:
        targets = self._targets_or_say()
        if not targets:
            return
        if len(targets) == 1:
            self.rerun(targets)
            return
        question = f"Submit a copy of each of the {_count(len(targets))}?"
        self._confirm(question, "Re-run", lambda: self.rerun(targets))

    @api_work(group="task-action")
    async def rerun(self, targets: list[uuid.UUID]) -> None:
        new = None
        for task in targets:
            reply = await self.mitosis.call(lambda c, t=task: c.rerun_task(t))
            new = reply.uuid
            if reply.warning:
                self.mitosis.notify(reply.warning, severity="warning", markup=False)
        if len(targets) == 1:
            self.mitosis.notify(f"Re-run submitted as {new}", markup=False)
        else:
            self.mitosis.notify(f"Submitted {_count(len(targets))} again.")
        self.tasks_changed(new)

    # -- labels --------------------------------------------------------------------------

    def action_edit_labels(self) -> None:
        targets = self._targets_or_say()
        if not targets:
            return
        focused = self.focused_task()
        current = focused.labels if focused is not None and len(targets) == 1 else []

        def chosen(labels: list[str] | None) -> None:
            if labels is not None:
                self.update_labels(targets, labels)

        self.mitosis.push_screen(LabelsForm(len(targets), current), chosen)

    @api_work(group="task-action")
    async def update_labels(self, targets: list[uuid.UUID], labels: list[str]) -> None:
        for task in targets:
            await self.mitosis.call(lambda c, t=task: c.update_task_labels(t, labels))
        shown = ", ".join(labels) or "none"
        self.mitosis.notify(f"Labels of {_count(len(targets))}: {shown}", markup=False)
        self.tasks_changed()
