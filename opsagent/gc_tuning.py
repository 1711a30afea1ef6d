"""Garbage-collector settings for a long-running agent process, applied once by an entry point
after start-up (imports, config, components built).

Why: forwarding allocates several small container objects per line (records, headers, futures,
kafka-python's per-record bookkeeping), most freed by reference counting at once. With the
default thresholds (700, 10, 10) the collector still ran about 2,800 young and 23 full
collections per 200,000 lines, and each full one traversed every object alive, including the
tens of thousands of records in flight and everything imported at start-up: about 15% of the
forwarder's CPU (docs/benchmarks.md, "Kafka forwarding"). Freezing the start-up objects moves
them out of every later collection; a larger young-generation threshold makes collections rare
while still bounding uncollected cyclic garbage to a few MB.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000  # allocations minus deallocations between young collections
OLDER_THRESHOLDS = (20, 20)  # young collections per middle one, middle ones per full one


def tune_after_startup() -> None:
    """Freeze what start-up allocated and raise the collection thresholds. Call once, from
    `main`, after the components are built and before the work loop starts."""
    gc.collect()  # do not freeze garbage made during start-up
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
