"""A serving process freezes its start-up heap and collects the young generation rarely."""

from __future__ import annotations

import gc

from switchgear.proxy.server import GC_THRESHOLDS, tune_gc


def test_tune_gc_freezes_the_heap_and_raises_the_thresholds() -> None:
    saved = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
        assert GC_THRESHOLDS[0] > saved[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)
