"""Garbage-collector settings every stage applies once it is set up, before its loop
(stage.runtime.Runtime.run calls :func:`tune_gc`).

Garbage collection. A stage allocates a few container objects per event (the decoded map, window
entries, output tuples) and frees nearly all of them at once by reference counting; the cyclic
collector finds almost nothing, yet with CPython's defaults (a young collection every 700 net
allocations, older ones traversing the whole heap) it took 8-9% of the analyzer's time on the
throughput benchmark's recording, with pauses up to 40 ms (docs/analyzer.md). Two changes:

* ``gc.freeze()`` after start-up moves what start-up built (imported modules, the compiled CEL
  programs, configuration) out of the collector's view for good: it is never garbage and no
  longer traversed by every full collection.
* A higher first threshold makes young collections ~70x rarer. Cycles are still collected, so
  memory stays bounded; only their collection is batched.
"""

from __future__ import annotations

import gc

__all__ = ["tune_gc", "GC_THRESHOLDS"]

GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Collect what start-up left behind, freeze the rest, and raise the thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
