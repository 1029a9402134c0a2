"""The Tasks pane's `/` filter words, turned into the coordinator's query fields."""

from __future__ import annotations

import uuid

import pytest

from mitosis_sdk.schemas import TaskQuery, TaskState
from mitosis_tui.filter_terms import FilterError, parse_filter


def test_plain_words_are_one_phrase_of_the_command_line():
    """Words without a known prefix (quoted or not) are matched as one substring."""
    assert parse_filter('train.py "--seed 1"') == {"text": "train.py --seed 1"}


def test_terms_map_to_query_fields():
    """tag:, label:, state:, creator:, worker:, exit: and prio: fill their fields."""
    worker = uuid.uuid4()
    fields = parse_filter(
        f"tag:gpu tag:cuda,big label:exp1 state:failed,cancelled creator:bob "
        f"worker:{worker} exit:!=0 prio:>=5"
    )
    assert fields == {
        "tags": ["gpu", "cuda", "big"],
        "labels": ["exp1"],
        "states": [TaskState.FAILED, TaskState.CANCELLED],
        "creators": ["bob"],
        "worker": worker,
        "exit_code": "!=0",
        "priority": ">=5",
    }
    TaskQuery(**fields)  # the query accepts them as they are


def test_a_repeated_value_is_kept_once():
    """tag:gpu twice is one tag (the coordinator refuses duplicates)."""
    assert parse_filter("tag:gpu tag:gpu,gpu") == {"tags": ["gpu"]}


def test_an_unknown_prefix_is_just_text():
    """foo:bar is not a term, so it is searched for in the command line."""
    assert parse_filter("http://x") == {"text": "http://x"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("state:finished", "states are pending, ready, running"),
        ("exit:big", "expected =N, !=N"),
        ("worker:abc", "not a worker UUID"),
        ("tag:", "give a value after the colon"),
        ('"unclosed', "cannot read the filter"),
    ],
)
def test_unusable_words_are_explained(text, message):
    """Each unusable word gets a message naming it and the accepted form."""
    with pytest.raises(FilterError, match=message):
        parse_filter(text)
