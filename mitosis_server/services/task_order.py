"""How task queries are ordered and continued (T5): a sort key per sortable column, and the
keyset cursor that picks up after a page.

Every order is total: the column's key terms, then the task id, all in one direction, so a
query read the other way round (ascending instead of descending) is exactly the same list
reversed; the Tasks pane reads the far half of a long query like that. A column that may be
empty (worker, exit code, duration) sorts by two terms, "has a value" and the value (0 when
it has none), so missing values come lowest and no term is ever NULL: the cursor's
comparison needs no NULL cases and reads alike on PostgreSQL and SQLite.

A cursor carries the sort, the order, the last row's key terms as the database computed them
(selected with the page, never recomputed here) and its id; the next page is what lies
strictly beyond that tuple, so tasks submitted or changed meanwhile never make it repeat or
skip a row that stayed put.
"""

from __future__ import annotations

import base64
import binascii
import json
import operator
import uuid
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, Subquery, Uuid, and_, case, func, literal, or_, select

from mitosis_sdk.schemas import SortOrder, TaskQuery, TaskSort, TaskState
from mitosis_server.db.dialects import milliseconds_between
from mitosis_server.db.models import Group, Task, Worker
from mitosis_server.errors import invalid

__all__ = ["encode_cursor", "page_keys", "page_order"]

# Descending, the order an operator reads a queue in: what runs, what waits, what went wrong.
STATE_RANK = {
    TaskState.RUNNING: 5,
    TaskState.READY: 4,
    TaskState.PENDING: 3,
    TaskState.FAILED: 2,
    TaskState.CANCELLED: 1,
    TaskState.COMPLETED: 0,
}
SIGNAL_BASE = 128  # a task killed by signal N sorts as exit code 128+N, as shells report it
_NO_WORKER = uuid.UUID(int=0)


@dataclass(frozen=True)
class _Term:
    expression: ColumnElement
    kind: type  # what the cursor holds for it: int, str or uuid.UUID


def _optional(value: ColumnElement, neutral: object, kind: type) -> list[_Term]:
    """Two non-NULL terms for a column that may be NULL: whether it has a value, then the
    value (``neutral`` where it has none)."""
    present = case((value.is_(None), 0), else_=1)
    return [_Term(present, int), _Term(func.coalesce(value, neutral), kind)]


def _terms(sort: TaskSort) -> list[_Term]:
    """The key terms of ``sort``, before the id that breaks ties."""
    match sort:
        case TaskSort.CREATED:
            return []  # ids grow with submission time
        case TaskSort.PRIORITY:
            return [_Term(Task.priority, int)]
        case TaskSort.STATE:
            ranks = {state.value: rank for state, rank in STATE_RANK.items()}
            return [_Term(case(ranks, value=Task.state, else_=-1), int)]
        case TaskSort.GROUP:
            return [_Term(Group.name, str)]
        case TaskSort.WORKER:
            return _optional(Worker.uuid, literal(_NO_WORKER, Uuid()), uuid.UUID)
        case TaskSort.EXIT_CODE:
            code = func.coalesce(Task.exit_code, Task.signal + SIGNAL_BASE)
            return _optional(code, 0, int)
        case TaskSort.DURATION:
            return _optional(milliseconds_between(Task.started_at, Task.finished_at), 0, int)
    raise AssertionError(f"no order for {sort}")


def _joined(statement: Select, sort: TaskSort) -> Select:
    """The tables a sort's terms read besides ``tasks``."""
    if sort == TaskSort.GROUP:
        return statement.join(Group, Group.id == Task.group_id)
    if sort == TaskSort.WORKER:
        return statement.outerjoin(Worker, Worker.id == Task.worker_id)
    return statement


def _ordered(expressions: list[ColumnElement], order: SortOrder) -> list[ColumnElement]:
    if order == SortOrder.DESC:
        return [expression.desc() for expression in expressions]
    return [expression.asc() for expression in expressions]


def page_keys(query: TaskQuery, conditions: list[ColumnElement[bool]]) -> Subquery:
    """The ids (and key terms, ``sort_0`` …) of one page and the row after it, in order.

    Only these narrow rows are sorted; the page's full rows are joined onto them afterwards,
    so ordering 100,000 tasks by a column costs a sort of ids and keys, not of whole tasks.
    """
    terms = _terms(query.sort)
    if query.cursor:
        conditions = [*conditions, _after_cursor(query, terms)]
    columns = [term.expression.label(f"sort_{n}") for n, term in enumerate(terms)]
    statement = _joined(select(Task.id.label("id"), *columns), query.sort)
    return (
        statement.where(*conditions)
        .order_by(*_ordered([term.expression for term in terms] + [Task.id], query.order))
        .offset(query.offset)
        .limit(query.limit + 1)
        .subquery("page")
    )


def page_order(keys: Subquery, query: TaskQuery) -> list[ColumnElement]:
    """The order of :func:`page_keys`, for the statement that joins the rows onto it."""
    sort_columns = [keys.c[f"sort_{n}"] for n in range(len(_terms(query.sort)))]
    return _ordered([*sort_columns, keys.c.id], query.order)


def encode_cursor(query: TaskQuery, row) -> str:
    """The cursor that continues after ``row`` (a row carrying the columns of
    :func:`page_keys`)."""
    keys = [row._mapping[f"sort_{n}"] for n in range(len(_terms(query.sort)))]
    keys = [str(key) if isinstance(key, uuid.UUID) else key for key in keys]
    raw = json.dumps([query.sort.value, query.order.value, keys, row.Task.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(query: TaskQuery, terms: list[_Term]) -> tuple[list[object], int]:
    """The keys and id a cursor holds, checked against the query's sort and order."""
    bad = invalid("cursor", "not a cursor of a query with this sort and order")
    try:
        padded = query.cursor + "=" * (-len(query.cursor) % 4)
        sort, order, keys, last_id = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, TypeError, binascii.Error):
        raise bad from None
    if (sort, order) != (query.sort.value, query.order.value) or type(last_id) is not int:
        raise bad
    if not isinstance(keys, list) or len(keys) != len(terms):
        raise bad
    values: list[object] = []
    for key, term in zip(keys, terms, strict=True):
        if term.kind is uuid.UUID and isinstance(key, str):
            try:
                key = uuid.UUID(key)
            except ValueError:
                raise bad from None
        elif type(key) is not term.kind:
            raise bad
        values.append(key)
    return values, last_id


def _after_cursor(query: TaskQuery, terms: list[_Term]) -> ColumnElement[bool]:
    """Rows strictly beyond the cursor's row in the query's order: the tuple of key terms
    and id compared term by term, the first that differs deciding."""
    values, last_id = _decode(query, terms)
    beyond = operator.gt if query.order == SortOrder.ASC else operator.lt
    condition: ColumnElement[bool] = beyond(Task.id, last_id)
    for term, value in zip(reversed(terms), reversed(values), strict=True):
        expression = term.expression
        condition = or_(beyond(expression, value), and_(expression == value, condition))
    return condition
