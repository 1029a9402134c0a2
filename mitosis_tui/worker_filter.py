"""The Workers pane's filter line: ``state:online,draining tag:gpu label:rack1 group:lab
creator:alice`` plus free words, parsed once into a query for the coordinator and a
predicate for single rows.

The coordinator narrows the page by every keyed term (so a fleet of thousands never comes to
the client whole); the free words match here, against what the table shows. The same
predicate decides whether a worker changed by a live event still belongs on the page, so
the two paths can never disagree. Free words are case-insensitive substrings of the worker's
UUID, host, creator, version, tags, labels or grants (``lab:admin`` finds that grant).
"""

from __future__ import annotations

from dataclasses import dataclass

from mitosis_sdk.schemas import WorkerInfo, WorkerQuery, WorkerState

__all__ = ["FILTER_HELP", "WorkerFilterText"]

KEYS = ("state", "tag", "label", "group", "creator")
FILTER_HELP = "state:online,draining tag:gpu label:rack1 group:lab creator:alice, or any text"


def _values(text: str) -> tuple[str, ...]:
    return tuple(value for value in text.split(",") if value)


@dataclass(frozen=True)
class WorkerFilterText:
    """A parsed filter; the empty filter shows every worker the caller can see."""

    text: str = ""
    states: tuple[WorkerState, ...] = ()
    tags: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    group: str | None = None
    creators: tuple[str, ...] = ()
    words: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> WorkerFilterText:
        """Raises ValueError (a message for the user) for an unknown state or two groups."""
        fields: dict[str, list[str]] = {key: [] for key in KEYS}
        words: list[str] = []
        for token in text.split():
            key, sep, value = token.partition(":")
            if sep and key.lower() in fields:
                fields[key.lower()].extend(_values(value))
            else:
                words.append(token.lower())
        try:
            states = tuple(WorkerState(state.lower()) for state in fields["state"])
        except ValueError:
            known = ", ".join(WorkerState)
            raise ValueError(f"unknown state in {text!r}: states are {known}") from None
        if len(set(fields["group"])) > 1:
            raise ValueError("one group at a time: group:NAME")
        return cls(
            text=" ".join(text.split()),
            states=states,
            tags=tuple(fields["tag"]),
            labels=tuple(fields["label"]),
            group=fields["group"][0] if fields["group"] else None,
            creators=tuple(fields["creator"]),
            words=tuple(words),
        )

    def query(self, limit: int) -> WorkerQuery:
        return WorkerQuery(
            group=self.group,
            tags=list(self.tags),
            labels=list(self.labels),
            states=list(self.states),
            creators=list(self.creators),
            limit=limit,
        )

    def matches(self, worker: WorkerInfo) -> bool:
        """Would the coordinator's query (and the free words) keep this worker?

        Without a state term the coordinator leaves out stopped workers, and so does this.
        """
        if self.states:
            if worker.state not in self.states:
                return False
        elif worker.state == WorkerState.STOPPED:
            return False
        if not set(self.tags) <= set(worker.tags) or not set(self.labels) <= set(worker.labels):
            return False
        if self.group is not None and self.group not in {g.group for g in worker.grants}:
            return False
        if self.creators and worker.creator not in self.creators:
            return False
        haystack = _haystack(worker)
        return all(word in haystack for word in self.words)


def _haystack(worker: WorkerInfo) -> str:
    parts = [
        str(worker.uuid),
        worker.facts.hostname or "",
        worker.creator,
        worker.version,
        *worker.tags,
        *worker.labels,
        *(f"{grant.group}:{grant.role}" for grant in worker.grants),
    ]
    return "\n".join(parts).lower()
