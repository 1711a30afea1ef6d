"""gc_tuning: start-up objects frozen, collection thresholds raised (restored afterwards)."""

from __future__ import annotations

import gc

from opsagent import gc_tuning


def test_freezes_startup_objects_and_raises_thresholds() -> None:
    saved = gc.get_threshold()
    try:
        gc_tuning.tune_after_startup()
        assert gc.get_threshold() == (gc_tuning.YOUNG_THRESHOLD, *gc_tuning.OLDER_THRESHOLDS)
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] > saved[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)
