"""The submit form (``n``) and the labels form (``e``), checked by the batch commands' rules.

The submit form fills the very fields ``tasks submit`` parses (an argparse ``Namespace``) and
builds the spec with :func:`mitosis_tui.commands.task_options.submit_spec`, then checks it
with the SDK's schema (every limit: tag names, sizes, durations), so the form accepts
exactly what ``mitosis-tui --batch tasks submit`` accepts. Each field is checked as it is
typed (the same path, with only that field set): a bad value turns the field red and the
message shows under the form.

Dependencies are one field: ``UUID`` (after-ok), or ``after:UUID``, ``after-ok:UUID``,
``after-not-ok:UUID``, ``after-any:UUID``, comma-separated — the batch flags' names.
"""

from __future__ import annotations

from argparse import Namespace

import msgspec
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.validation import ValidationResult, Validator
from textual.widgets import Checkbox, Input, Select

from mitosis_sdk.schemas import LabelsUpdate, TaskSpec
from mitosis_tui.command_bridge import split_line
from mitosis_tui.commands.parsing import split_list
from mitosis_tui.commands.session import UsageError
from mitosis_tui.commands.task_options import DEPENDENCY_OPTIONS, submit_spec
from mitosis_tui.screens.forms import FormScreen, Invalid

__all__ = ["LabelsForm", "SubmitForm", "spec_from_fields"]

# Form field -> (label, placeholder). The ids are ``submit-<field>``.
TEXT_FIELDS = {
    "command": ("Command", "python train.py --seed 1   (sh -c '…' for a shell)"),
    "tags": ("Tags", "gpu,cuda12   (a worker must have them all)"),
    "labels": ("Labels", "exp1,seed1"),
    "env": ("Env", "SEED=1,LR=0.1"),
    "timeout": ("Timeout", "10m"),
    "priority": ("Priority", "0   (higher runs first)"),
    "resources": ("Resources", "attachment=KEY:PATH, artifact=UUID:TYPE:PATH"),
    "after": ("After", "UUID (after-ok), after:UUID, after-not-ok:UUID, after-any:UUID"),
    "retries": ("Retries", "0"),
}
_CONDITIONS = {option.replace("_", "-"): option for option in DEPENDENCY_OPTIONS}


def _number(text: str, what: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{what}: a whole number, got {text!r}") from None


def _dependencies(text: str) -> dict[str, list[str]]:
    chosen: dict[str, list[str]] = {option: [] for option in DEPENDENCY_OPTIONS}
    for item in split_list(text):
        condition, sep, task = item.rpartition(":")
        option = _CONDITIONS.get(condition or "after-ok") if sep or not condition else None
        if option is None:
            known = ", ".join(_CONDITIONS)
            raise UsageError(f"after: {item!r}: write UUID or CONDITION:UUID ({known})")
        chosen[option].append(task)
    return chosen


def spec_from_fields(values: dict[str, str], group: str | None, terminal: bool) -> TaskSpec:
    """The spec ``tasks submit`` would build from these texts; UsageError if it would not."""
    command = split_line(values.get("command", ""))
    if not command:
        raise UsageError("command: what should the task run?")
    args = Namespace(
        group=group or None,
        labels=values.get("labels", ""),
        tags=values.get("tags") or None,
        env=values.get("env") or None,
        timeout=values.get("timeout", "").strip() or None,
        priority=_number(values.get("priority", ""), "priority"),
        resources=values.get("resources") or None,
        terminal=terminal,
        command=command,
        retries=_number(values.get("retries", ""), "retries"),
        retry_delay=None,
        **_dependencies(values.get("after", "")),
    )
    spec = submit_spec(args)
    try:  # every limit of the wire schema (the constructor checks only some)
        return msgspec.convert(msgspec.to_builtins(spec), TaskSpec)
    except msgspec.ValidationError as exc:
        raise UsageError(str(exc)) from None


class _FieldRule(Validator):
    """Checks one field by building a spec with only that field set (the same path)."""

    def __init__(self, field: str) -> None:
        super().__init__()
        self.field = field

    def validate(self, value: str) -> ValidationResult:
        values = {"command": "true", self.field: value}
        if self.field == "command" and not value.strip():
            return self.success()  # an empty command is reported on submit only
        try:
            spec_from_fields(values, None, False)
        except UsageError as exc:
            return self.failure(str(exc))
        return self.success()


class SubmitForm(FormScreen[TaskSpec]):
    """A new task; ``groups`` are those the user may submit to (write or admin)."""

    TITLE_TEXT = "Submit a task"

    def __init__(self, groups: list[str], group: str | None) -> None:
        super().__init__()
        self.groups = groups
        self.group = group if group in groups else (groups[0] if groups else None)

    def fields(self) -> ComposeResult:
        with VerticalScroll(id="submit-fields"):
            options = [(name, name) for name in self.groups]
            yield from self.field(
                "Group",
                Select(options, value=self.group or Select.BLANK, id="submit-group", compact=True),
            )
            for field, (label, placeholder) in TEXT_FIELDS.items():
                widget = Input(
                    placeholder=placeholder,
                    id=f"submit-{field}",
                    compact=True,
                    validators=[_FieldRule(field)],
                    validate_on=["changed"],
                )
                yield from self.field(label, widget)
            yield Checkbox("Keep stdout/stderr (std-log)", id="submit-terminal", compact=True)

    def on_mount(self) -> None:
        self.query_one("#submit-command", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        result = event.validation_result
        message = "" if result is None or result.is_valid else result.failure_descriptions[0]
        self.query_one("#form-error").update(f"✗ {message}" if message else "")

    def result(self) -> TaskSpec:
        values = {f: self.value(f"#submit-{f}") for f in TEXT_FIELDS}
        group = self.query_one("#submit-group", Select).value
        terminal = self.query_one("#submit-terminal", Checkbox).value
        try:
            return spec_from_fields(values, group if isinstance(group, str) else None, terminal)
        except UsageError as exc:
            raise Invalid(str(exc)) from None


class LabelsForm(FormScreen[list[str]]):
    """Replace the labels of ``count`` tasks (empty: remove them all)."""

    def __init__(self, count: int, current: list[str]) -> None:
        super().__init__()
        self.TITLE_TEXT = (
            f"Labels of {count} tasks (replaced on each)" if count > 1 else "Labels of the task"
        )
        self.current = current

    def fields(self) -> ComposeResult:
        yield from self.field(
            "Labels", Input(",".join(self.current), id="labels-value", placeholder="none")
        )

    def result(self) -> list[str]:
        labels = split_list(self.value("#labels-value"))
        try:
            msgspec.convert({"labels": labels}, LabelsUpdate)
        except (msgspec.ValidationError, ValueError) as exc:
            raise Invalid(str(exc)) from None
        return labels
