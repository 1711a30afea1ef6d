from __future__ import annotations

import pytest

from opsagent.reload import Settle, plan_reload

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


# Settle: (event times, poll times with the digest read then) -> the poll that applies, if any.
SETTLE_CASES = [
    # One write: read at 1.0 (first look), same content at 2.0: applied then.
    ([0.0], [(1.0, "x"), (2.0, "x")], (2.0, "x")),
    # Polled before the quiet period ends: nothing read, nothing applied yet.
    ([0.0], [(0.5, "x"), (1.0, "x"), (1.5, "x"), (2.0, "x")], (2.0, "x")),
    # A second write 0.3 s later pushes the quiet period back.
    ([0.0, 0.3], [(1.0, "half"), (1.3, "whole"), (2.3, "whole")], (2.3, "whole")),
    # A write that made no event: the second read differs, so wait again.
    ([0.0], [(1.0, "half"), (2.0, "whole"), (3.0, "whole")], (3.0, "whole")),
    # An unreadable file settles too (the reload then reports why).
    ([0.0], [(1.0, None), (2.0, None)], (2.0, None)),
    # No event: never anything to apply.
    ([], [(5.0, "x"), (10.0, "x")], None),
    # An event every 0.5 s for 10 s does not starve it: first look after 5 s, second 5 s later.
    ([i * 0.5 for i in range(20)], [(t / 2, "x") for t in range(1, 40)], (10.0, "x")),
]


@pytest.mark.parametrize(("events", "polls", "applied"), SETTLE_CASES,
                         ids=["one-write", "early-polls", "two-parts", "silent-write",
                              "unreadable", "no-event", "steady-events"])
def test_a_config_file_is_applied_only_once_settled(
        events: list[float], polls: list[tuple[float, str | None]],
        applied: tuple[float, str | None] | None) -> None:
    settle = Settle(1.0)
    pending_events = sorted(events)
    got = None
    for now, content in polls:
        while pending_events and pending_events[0] <= now:
            settle.changed(pending_events.pop(0))
        ok, digest = settle.poll(now, lambda c=content: c)   # type: ignore[misc]
        if ok:
            assert got is None, "applied twice"
            got = (now, digest)
    assert got == applied
    assert settle.timeout(100.0) is None      # nothing left pending after applying
