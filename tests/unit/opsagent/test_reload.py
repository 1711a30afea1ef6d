from __future__ import annotations

import pytest

from opsagent.reload import plan_reload

A, B, C = ("forward", "a"), ("profile", "b"), ("rotate", "c")


@pytest.mark.parametrize(
    ("running", "wanted", "stop", "start", "keep"),
    [
        ({A: 1}, {A: 1}, (), (), (A,)),
        ({A: 1}, {A: 2}, (A,), (A,), ()),
        ({A: 1}, {}, (A,), (), ()),
        ({}, {A: 1}, (), (A,), ()),
        ({A: 1, B: 1, C: 1}, {A: 1, B: 2, ("cron", "crontabs"): 1}, (C, B),
         (B, ("cron", "crontabs")), (A,)),
    ],
    ids=["unchanged", "changed", "removed", "added", "mixed"],
)
def test_only_what_changed_is_restarted(running: dict, wanted: dict, stop: tuple, start: tuple,
                                        keep: tuple) -> None:
    plan = plan_reload(running, wanted)
    assert (plan.stop, plan.start, plan.keep) == (stop, start, keep)
    assert plan.empty == (not stop and not start)
