"""The Tasks pane's ``/`` filter: words a person types, turned into the coordinator's query.

``train seed=1 tag:gpu label:exp1 state:failed,cancelled creator:bob exit:!=0 prio:>=5``

* a plain word (or a quoted phrase) must appear in the command line; several are one phrase;
* ``tag:T`` and ``label:L`` (repeatable, or comma-separated): the task has all of them;
* ``state:S[,S…]``: any of these states (it replaces the state quick-filter while set);
* ``creator:U[,U…]``: submitted by any of them; ``worker:UUID``: ran on that worker;
* ``exit:OP`` and ``prio:OP``: ``=0``, ``!=0``, ``>1``, ``>=5``, ``<0``, ``<=3``.

Everything maps to :class:`~mitosis_sdk.schemas.TaskFilter` fields, so the filtering is done
by the coordinator over all the group's tasks, not over the rows the client happens to hold.
Kept free of Textual: it is plain parsing, tested as such.
"""

from __future__ import annotations

import shlex
import uuid

from mitosis_sdk.schemas import TaskState, parse_comparison

__all__ = ["TERMS", "FilterError", "parse_filter"]

TERMS = {
    "tag": "tags",
    "label": "labels",
    "state": "states",
    "creator": "creators",
    "worker": "worker",
    "exit": "exit_code",
    "prio": "priority",
}
_LISTS = {"tags", "labels", "states", "creators"}


class FilterError(ValueError):
    """The filter text cannot be used; the message says which word and why."""


def _value(field: str, text: str) -> object:
    if field == "states":
        try:
            return TaskState(text)
        except ValueError:
            raise FilterError(f"state:{text}: states are {', '.join(TaskState)}") from None
    if field in ("exit_code", "priority"):
        try:
            parse_comparison(text)
        except ValueError as exc:
            raise FilterError(f"{field.split('_')[0]}:{text}: {exc}") from None
        return text.strip()
    if field == "worker":
        try:
            return uuid.UUID(text)
        except ValueError:
            raise FilterError(f"worker:{text}: not a worker UUID") from None
    return text


def parse_filter(text: str) -> dict[str, object]:
    """TaskFilter fields for ``text`` (only those it sets); FilterError when unusable."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise FilterError(f"cannot read the filter: {exc}") from None
    fields: dict[str, object] = {}
    phrase: list[str] = []
    for word in words:
        name, sep, rest = word.partition(":")
        field = TERMS.get(name.lower()) if sep else None
        if field is None:
            phrase.append(word)
            continue
        if not rest:
            raise FilterError(f"{word}: give a value after the colon")
        if field in _LISTS:
            values = fields.setdefault(field, [])
            for item in filter(None, (part.strip() for part in rest.split(","))):
                value = _value(field, item)
                if value not in values:
                    values.append(value)
        else:
            fields[field] = _value(field, rest)
    if phrase:
        fields["text"] = " ".join(phrase)
    return fields
