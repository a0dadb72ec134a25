"""stage.memory.tune_gc: start-up objects frozen, thresholds raised, and cycles still collected."""

from __future__ import annotations

import json
import subprocess
import sys

from stage.memory import GC_THRESHOLDS

PROBE = r"""
import gc, json, weakref
from stage.memory import tune_gc

class Node:
    pass

tune_gc()
frozen, thresholds = gc.get_freeze_count(), gc.get_threshold()
alive = []
for i in range(300_000):            # garbage cycles, as a stage could leave behind
    a, b = Node(), Node()
    a.other, b.other = b, a
    if i % 1000 == 0:
        alive.append(weakref.ref(a))
print(json.dumps({"frozen": frozen, "thresholds": thresholds,
                  "cycles_still_alive": sum(r() is not None for r in alive), "sampled": len(alive)}))
"""


def test_tune_gc_freezes_startup_and_still_collects_cycles():
    """Run in a child: tuning this pytest process would change every later test."""
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    assert got["frozen"] > 1000                      # the imported modules left the collector's view
    assert tuple(got["thresholds"]) == GC_THRESHOLDS
    # 300 sampled cycles: all but those made since the last young collection are gone
    assert got["cycles_still_alive"] <= GC_THRESHOLDS[0] // 2 // 1000 + 1
