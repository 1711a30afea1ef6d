"""Combined faults at seeded random moments against the real `opsagent run` (a [[forward]] job and
a [[rotate]] job with quotas over the same pod log directories) and a real broker: agent
SIGKILLs and restarts, broker SIGKILLs with outages longer than delivery_timeout_ms, rename
rotations during the outage and while the agent is down (also of files created while it was
down), copytruncate, deletion of rotated files, lines written in two pieces, and the agent's own
size rotation, compression and quota deletions. Then a consumer checks docs/delivery.md's
promise: no line missing but those the docs allow, every record one whole line, per-file order
of first occurrences, duplicates within the documented bound.

It runs once per producer backend (`kafka_client`: forward.kafka.client = "kafka-python" and
"librdkafka"; conftest.py), each against a broker of its own. The seed and the backend are
printed at the start and in every failure message; `--chaos-seed N` replays it,
`--chaos-minutes M` makes a long release run (docs/testing.md, "The chaos suite")."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.kafka import KafkaBroker
from tests.integration.chaos.chaos_agent import Settings, TopicReader, wait_until
from tests.integration.chaos.chaos_oracle import DupLimits, duplicate_bound, judge
from tests.integration.chaos.chaos_plan import describe, make_plan
from tests.integration.chaos.chaos_run import ChaosRun
from tests.integration.chaos.chaos_writers import line_len

pytestmark = pytest.mark.integration

TOPIC = "chaos"
METRICS = ("opsagent_tail_truncation_lost_bytes_total", "opsagent_tail_abandoned_bytes_total",
           "opsagent_rotate_forced_undelivered_bytes_total", "opsagent_tail_errors_total",
           "opsagent_rotate_deletions_total", "opsagent_rotate_rotations_total",
           "opsagent_tail_truncations_total", "opsagent_tail_rotations_total")


def test_no_line_lost_under_combined_faults(
        chaos_seed: int, chaos_secs: float, kafka_client: str,
        kafka_broker_factory: Callable[..., KafkaBroker], tmp_path: Path) -> None:
    settings = dataclasses.replace(Settings(), client=kafka_client)
    broker = kafka_broker_factory(sasl_plain=False)
    broker.create_topic(TOPIC, partitions=3)
    plan = make_plan(chaos_seed, chaos_secs, writers=settings.writers,
                     delivery_timeout_secs=settings.delivery_timeout_ms / 1000)
    run = ChaosRun(chaos_seed, tmp_path, broker, TOPIC, settings)
    run.timeline.extend(["plan:", *describe(plan, "    ")])
    reader: TopicReader | None = None
    try:
        run.start()
        run.execute(plan)
        expected = run.finish()
        reader = TopicReader(broker.bootstrap, TOPIC)

        def delivered() -> bool:
            assert reader is not None
            run.check_agent()
            reader.catch_up()
            return judge(reader.values, expected, run.may_lose_from).lost == 0

        # Bounded: after the last fault the backlog of a few MB needs seconds; the wait ends
        # after 120 s + half the run's length, or 60 s without a new record. No timing is
        # asserted: an incomplete delivery shows as lost lines below.
        in_time = wait_until(delivered, timeout=120 + chaos_secs / 2, interval=2.0,
                             progress=lambda: sum(len(v) for v in reader.values.values()),
                             stall_secs=60)
        run.log(f"delivery {'complete' if in_time else 'INCOMPLETE'} after the faults")
        metrics = run.agent.metrics(METRICS)
        run.agent_should_run = False
        rc = run.agent.terminate(timeout=settings.drain_deadline_secs + 30)
        run.log(f"agent SIGTERM: exit {rc}")
        reader.catch_up()
    except Exception as e:   # the seed and the timeline in every failure message
        raise AssertionError(run.report(
            f"CHAOS ERROR (seed {chaos_seed}, backend {kafka_client}): {e!r}", set())) from e
    finally:
        run.agent.stop_quietly()
        run.stop_tracking()
        for w in run.writers:
            if w.is_alive():
                w.stop()
        if reader is not None:
            reader.close()

    verdict = judge(reader.values, expected, run.may_lose_from, run.fragments_ok())
    limits = DupLimits(settings.checkpoint_interval_secs, settings.poll_timeout_secs,
                       settings.max_inflight_bytes, line_len("w0-1") - 1,
                       settings.delivery_timeout_ms / 1000)
    bound, how = duplicate_bound(limits, reader.timestamps, run.kills_ms, run.outages,
                                 run.copy_lines, run.terms)
    problems = list(run.problems)
    if verdict.lost:
        problems.append(f"{verdict.lost} lines lost that docs/delivery.md promises")
    if verdict.malformed:
        problems.append(f"{verdict.malformed} records are not one whole line (split lines?)")
    if verdict.order:
        problems.append(f"{len(verdict.order)} first occurrences out of file order")
    if verdict.duplicates > bound:
        problems.append(f"{verdict.duplicates} duplicates, bound {bound}: {how}")
    if rc != 0:
        problems.append(f"agent exited {rc} on SIGTERM")
    fids = set(verdict.missing) | set(verdict.allowed_missing)
    text = "\n".join([f"CHAOS FAILURE (seed {chaos_seed}, backend {kafka_client}): "
                      + "; ".join(problems),
                      verdict.summary(), verdict.details(),
                      *(f"  MALFORMED record from {reader.odd.get(v, '?')}"
                        for v in verdict.malformed_samples),
                      f"duplicate bound {bound}: {how}",
                      "agent metrics before SIGTERM:", *metrics])
    if not problems:
        print(f"chaos seed {chaos_seed}, backend {kafka_client}: {verdict.summary()}; "
              f"duplicate bound {bound} ({how}); {sum(expected.values())} lines in "
              f"{len(expected)} files; faults: {run.fault_summary()}")
    assert not problems, run.report(text, fids)
