"""Memory of the analyzer's per-tree history with every index at its cap (issue 11).

    python -m bench.history_memory [--trees 20] [--cap 4096] [--rules rules.json]

The worst case the caps allow: every session its own agent tree, and in every tree each growing
index full (``history_index_cap`` entries): written paths and their (dev, ino) identities (that
many distinct write-intent opens), process images and pending interpreter scripts (that many
distinct live processes running ``python3 script.py``). The trees are filled through the real
analyzer core with such events; tracemalloc measures what the core holds, once with the
sessions open and again after they closed (a closed session's tree is kept for the horizon,
so the second figure is the trees alone). Linear in the number of trees, so ``--trees`` trees
are measured and scaled to 1,000.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import sys
import tracemalloc
from typing import Any

from bench.stages import CHECKOUT

__all__ = ["measure"]

S = 1_000_000_000
MB = 1024 * 1024


def _tree_events(tree: int, cap: int) -> list[dict[str, Any]]:
    """Events filling every index of one tree to ``cap`` (one session per tree)."""
    base = {"session_id": tree + 1, "tree_id": tree, "shard": tree, "uid": 1000, "root": 1,
            "profile": "bench-agent", "ppid": 1, "comm": "python3"}
    out: list[dict[str, Any]] = []
    for i in range(cap):
        t = S + i * 1000
        out.append({**base, "kind": "open", "ts_ns": t, "tgid": 2, "tid": 2, "flags": 0x241,
                    "path": f"/home/agent/project-{tree:04d}/build/output/object_{i:06d}.o",
                    "ino": 1_000_000 + i, "dev": 2049, "mode": 0o644})
    for i in range(cap):
        tgid = 10_000 + i
        out.append({**base, "kind": "exec", "ts_ns": 2 * S + i * 1000, "tgid": tgid, "tid": tgid,
                    "path": "/usr/bin/python3", "exe": "/usr/bin/python3.11",
                    "argv": ["python3", f"tools/step_{i:06d}.py"], "cap_eff": 0, "seccomp": 0,
                    "lineage": [{"tgid": tgid, "ppid": 1, "comm": "python3"}], "depth": 1})
    return out


def _held_mb() -> float:
    gc.collect()
    return tracemalloc.get_traced_memory()[0] / MB


def measure(trees: int = 20, cap: int | None = None, rules: str | None = None) -> dict[str, Any]:
    """MB per 1,000 sessions (and per 1,000 trees alone) with every index at its cap."""
    from analyzer.core import Analyzer
    from policy import load_policy
    policy = load_policy(rules or CHECKOUT / "rules.json")
    if cap:
        policy = dataclasses.replace(policy, analysis=dataclasses.replace(policy.analysis, history_index_cap=cap))
    cap = policy.analysis.history_index_cap
    tracemalloc.start()
    try:
        before = _held_mb()
        core = Analyzer(policy)
        for tree in range(trees):
            for ev in _tree_events(tree, cap):
                core.handle(("sessionizer.event", ev), 0)
        with_sessions = _held_mb() - before
        full = [len(t.written.items) + len(t.written_ids.items) + len(t.procs.items) + len(t.scripts.items)
                for t in core.trees.trees.values()]
        for tree in range(trees):
            core.handle(("sessionizer.session", {"kind": "session", "state": "closed",
                                                 "session_id": tree + 1, "shard": tree}), 0)
        trees_only = _held_mb() - before
    finally:
        tracemalloc.stop()
    assert all(n == 4 * cap for n in full), "an index was not filled to its cap"
    scale = 1000 / trees
    return {"history_mb_per_1000_sessions_at_cap": round(with_sessions * scale, 1),
            "detail": {"history_index_cap": cap, "trees_measured": trees,
                       "trees_only_mb_per_1000": round(trees_only * scale, 1),
                       "overflows": core.stats()["history_overflows"]}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.history_memory")
    p.add_argument("--trees", type=int, default=20)
    p.add_argument("--cap", type=int, default=None, help="history_index_cap (default: the rules file's)")
    p.add_argument("--rules", default=None)
    args = p.parse_args(argv)
    print(measure(args.trees, args.cap, args.rules))
    return 0


if __name__ == "__main__":
    sys.exit(main())
