"""The wire rules of tasks and workers (FEATURES T1, V): what the client refuses before
sending and the coordinator refuses on arrival, each naming its field."""

from __future__ import annotations

import msgspec
import pytest

from mitosis_sdk.schemas import (
    FetchRequest,
    ResultReport,
    TaskBatch,
    TaskCancel,
    TaskChange,
    TaskInfo,
    TaskSpec,
    WorkerRegister,
    parse_comparison,
)


def decode(raw: dict, cls=TaskSpec):
    return msgspec.json.decode(msgspec.json.encode(raw), type=cls)


def test_the_t1_example_spec_is_accepted_as_written():
    """The JSON of FEATURES T1, verbatim (dependencies and retries are only refused later,
    by a coordinator that does not run them yet)."""
    spec = decode(
        {
            "command": ["python", "train.py", "--seed", "1"],
            "group": "lab",
            "tags": ["gpu"],
            "labels": ["exp1"],
            "env": {"SEED": "1"},
            "timeout": "10m",
            "priority": 0,
            "terminal_output": True,
            "resources": [
                {"attachment": "data/x.tar.gz", "path": "x.tar.gz"},
                {
                    "artifact": "6f1e0a4c-3b7e-4d5a-9a3e-2f1c0b9d8e7f",
                    "type": "result",
                    "path": "prev.tar.gz",
                },
            ],
            "depends_on": [
                {"task": "6f1e0a4c-3b7e-4d5a-9a3e-2f1c0b9d8e7f", "condition": "afterok"}
            ],
            "retries": 0,
        }
    )
    assert (spec.timeout_seconds, spec.resources[1].type) == (600.0, "result")


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"timeout": "10x"}, "timeout: expected a duration"),
        ({"timeout": -1}, "timeout: expected a duration"),
        ({"timeout": "0s"}, "between 1s and 30d"),
        ({"timeout": "31d"}, "between 1s and 30d"),
        ({"tags": [f"t{i}" for i in range(33)]}, "length <= 32"),
        ({"labels": ["a", "a"]}, "labels: a given more than once"),
        ({"env": {f"V{i}": "" for i in range(257)}}, "at most 256 variables"),
        ({"env": {"V": "x" * (64 * 1024)}}, "over 64 KiB"),
        ({"env": {"1X": "y"}}, "not a variable name"),
        ({"env": {"MITO_ATTEMPT": "2"}}, "set by the worker"),
        ({"command": ["x", "y" * (64 * 1024)]}, "over 64 KiB"),
        ({"command": [""]}, "program name is empty"),
        ({"priority": 2**31}, "<= 2147483647"),
        ({"resources": [{"attachment": "../etc/passwd", "path": "p"}]}, "without '..'"),
        ({"resources": [{"attachment": "a", "path": "/abs"}]}, "relative path"),
        ({"resources": [{"path": "p"}]}, "exactly one of"),
        (
            {"resources": [{"artifact": "6f1e0a4c-3b7e-4d5a-9a3e-2f1c0b9d8e7f", "path": "p"}]},
            "needs its 'type'",
        ),
        ({"retries": 101}, "<= 100"),
        ({"colour": "red"}, "unknown field"),
    ],
)
def test_each_limit_names_its_field(fields, words):
    with pytest.raises(msgspec.ValidationError) as refused:
        decode({"command": ["x"], **fields})
    assert words in str(refused.value)


def test_a_batch_holds_at_most_10000_specs():
    with pytest.raises(msgspec.ValidationError, match="length <= 10000"):
        decode({"tasks": [{"command": ["x"]}] * 10_001}, TaskBatch)


def test_changes_and_cancels_say_what_is_missing():
    with pytest.raises(msgspec.ValidationError, match="nothing to change"):
        decode({}, TaskChange)
    with pytest.raises(msgspec.ValidationError, match="either 'uuids' or 'filter'"):
        decode({}, TaskCancel)
    with pytest.raises(msgspec.ValidationError, match="at least one condition"):
        decode({"filter": {}}, TaskCancel)
    assert decode({"priority": 3}, TaskChange).tags is msgspec.UNSET


def test_worker_calls_are_bounded():
    """Fetch waits at most 30 s; a result says how the attempt ended; slots are 1-1024."""
    assert decode({"wait": "5s"}, FetchRequest).wait_seconds == 5.0
    with pytest.raises(msgspec.ValidationError, match="at most 30s"):
        decode({"wait": "1m"}, FetchRequest)
    with pytest.raises(msgspec.ValidationError, match="exit_code, a signal or a reason"):
        decode({"attempt": 1}, ResultReport)
    with pytest.raises(msgspec.ValidationError, match="<= 1024"):
        decode({"slots": 5000}, WorkerRegister)
    with pytest.raises(msgspec.ValidationError, match="grants: lab given more than once"):
        decode({"grants": [{"group": "lab"}, {"group": "lab", "role": "admin"}]}, WorkerRegister)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("=0", ("=", 0)),
        ("!=0", ("!=", 0)),
        (">1", (">", 1)),
        ("<= -2", ("<=", -2)),
        ("5", ("=", 5)),
        ("==3", ("=", 3)),
    ],
)
def test_comparisons_as_people_type_them(text, parsed):
    assert parse_comparison(text) == parsed


def test_a_comparison_that_is_not_one_is_refused():
    with pytest.raises(ValueError, match="expected =N"):
        parse_comparison("about 3")


OLD_TASK_INFO = {  # a get-task reply from a coordinator that predates dependents
    "uuid": "6f1e0a4c-3b7e-4d5a-9a3e-2f1c0b9d8e7f",
    "group": "lab",
    "seq": 1,
    "creator": "alice",
    "state": "ready",
    "command": ["true"],
    "tags": [],
    "labels": [],
    "priority": 0,
    "timeout": 600.0,
    "terminal_output": False,
    "created_at": "2030-01-02T12:00:00Z",
    "attempt": 0,
    "max_attempts": 3,
    "retries": 0,
}


def test_a_task_reply_without_dependents_still_decodes():
    """Dependents are optional: an older coordinator's reply decodes with none listed and
    none left out; a bounded one says how many it left out."""
    old = decode(OLD_TASK_INFO, TaskInfo)
    assert (old.dependents, old.dependents_total, old.dependents_unlisted) == (None, None, 0)
    waiting = [{"task": OLD_TASK_INFO["uuid"], "condition": "afterok"}]
    bounded = decode({**OLD_TASK_INFO, "dependents": waiting, "dependents_total": 3}, TaskInfo)
    assert (bounded.dependents[0].condition, bounded.dependents_unlisted) == ("afterok", 2)
