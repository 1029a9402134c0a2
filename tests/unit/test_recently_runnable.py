"""The submit warning's short memory (services/single_submit.py): a yes per group and tag
set, for RUNNABLE_FOR seconds."""

from __future__ import annotations

from mitosis_server.services.single_submit import RUNNABLE_FOR, RecentlyRunnable


def test_a_yes_stands_for_its_group_and_tag_set_until_it_runs_out():
    now = [100.0]
    runnable = RecentlyRunnable(clock=lambda: now[0])
    runnable.learn(1, ["gpu", "cuda"])
    assert runnable.knows(1, ["cuda", "gpu"])  # a set: order does not matter
    assert not runnable.knows(1, ["gpu"])  # fewer tags is another question
    assert not runnable.knows(2, ["gpu", "cuda"])  # so is another group
    now[0] += RUNNABLE_FOR
    assert not runnable.knows(1, ["gpu", "cuda"])


def test_it_stays_small_however_many_questions_it_hears():
    runnable = RecentlyRunnable(clock=lambda: 0.0)
    for group in range(10_000):
        runnable.learn(group, [])
    assert runnable.knows(9_999, [])
    assert len(runnable) <= 4096
