"""The statistics a profile pipeline hands to its sinks: intervals of named, labelled samples.

Below every layer (like clock.py and errors.py): processors produce these and sinks consume
them, and neither may import the other's layer upward (docs/architecture.md)."""

from __future__ import annotations

import dataclasses

Labels = tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    name: str  # e.g. "requests", "latency_p99" (sinks add prefix and pipeline name)
    labels: Labels
    value: int | float
    kind: str  # "c" counter (per-interval delta) or "g" gauge


@dataclasses.dataclass(frozen=True, slots=True)
class Interval:
    start: int  # epoch seconds of the interval's start (the Graphite timestamp)
    samples: list[Sample]
