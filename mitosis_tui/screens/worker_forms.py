"""Forms for managing workers: replace tags or labels, set the grants.

Each checks its text with the wire's own rules before anything is sent and dismisses with a
typed value (``None`` when cancelled). Lists are written as the batch commands take them:
separated by spaces or commas; an empty field means "none".
"""

from __future__ import annotations

import re

from textual.app import ComposeResult
from textual.widgets import Input, Static

from mitosis_sdk.schemas import Grant
from mitosis_sdk.schemas.limits import MAX_TAGS, TAG_PATTERN
from mitosis_tui.commands.session import UsageError
from mitosis_tui.commands.workers import parse_grant
from mitosis_tui.screens.forms import FormScreen, Invalid, check_name


def split_words(text: str) -> list[str]:
    """``a b,c`` → ``[a, b, c]``, duplicates dropped, order kept."""
    return list(dict.fromkeys(word for word in re.split(r"[\s,]+", text.strip()) if word))


class ValuesForm(FormScreen[list[str]]):
    """Replace a worker's tags or labels (the same rules: 1-128 characters each, ≤ 32)."""

    def __init__(self, title: str, what: str, current: list[str], hint: str) -> None:
        super().__init__()
        self.TITLE_TEXT = title
        self.what, self.current, self.hint = what, current, hint

    def fields(self) -> ComposeResult:
        yield from self.field(
            self.what.capitalize(), Input(" ".join(self.current), id="values", placeholder="none")
        )
        yield Static(self.hint, classes="note")

    def result(self) -> list[str]:
        values = split_words(self.value("#values"))
        bad = next((v for v in values if not re.fullmatch(TAG_PATTERN, v)), None)
        if bad is not None:
            raise Invalid(f"{self.what}: {bad[:40]!r} is longer than 128 characters")
        if len(values) > MAX_TAGS:
            raise Invalid(f"at most {MAX_TAGS} {self.what}, got {len(values)}")
        return values


class GrantsForm(FormScreen[list[Grant]]):
    """The groups that may use a worker, as ``GROUP:ROLE`` (role read, write or admin)."""

    def __init__(self, title: str, current: list[Grant]) -> None:
        super().__init__()
        self.TITLE_TEXT = title
        self.current = current

    def fields(self) -> ComposeResult:
        text = " ".join(f"{grant.group}:{grant.role}" for grant in self.current)
        yield from self.field("Grants", Input(text, id="grants", placeholder="lab:write ops:admin"))
        yield Static(
            "GROUP:ROLE, role read (see it), write (run the group's tasks) or admin (manage"
            " it); GROUP alone means write. Groups left out lose their grant.",
            classes="note",
        )

    def result(self) -> list[Grant]:
        grants = []
        for word in split_words(self.value("#grants")):
            try:
                grant = parse_grant(word)
            except UsageError as exc:
                raise Invalid(str(exc)) from None
            grants.append(Grant(group=check_name(grant.group, "group"), role=grant.role))
        groups = [grant.group for grant in grants]
        if len(set(groups)) != len(groups):
            raise Invalid("each group once")
        return grants
