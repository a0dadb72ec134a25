"""Memory: RSS of each stage with 1, 100 and 1,000 concurrent open sessions, then after churn.

    python -m bench memory              # part of `make bench`

The replayer opens sessions of the bench profile (recording.open_sessions: a root, one child, one
open each) and keeps them open; after each step it waits until events.log has every line (the
whole pipeline has seen them) and reads VmRSS of every stage. Then it closes them all, waits the
profile's close grace, and runs CHURN_CYCLES cycles of opening and closing 1,000 more sessions:
if memory is bounded by configuration, RSS after the churn does not grow with the number of
closed sessions.

``rss_mb_per_1000_sessions`` = sum over the stages of RSS(1,000 open) - RSS(1 open).

``history_mb_per_1000_sessions_at_cap``: the analyzer's per-tree history with every index at its
``history_index_cap`` (bench/history_memory.py: in-process, tracemalloc, scaled from a few full
trees), the worst case the caps allow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import history_memory
from bench.feeder import Feeder, batches
from bench.pids import LivePids
from bench.recording import close_sessions, expected_records, open_sessions
from bench.stages import BenchDirs, HeartbeatWatch, StageSet
from bench.throughput import SETTLE_S, LineCounter, loss_counters, wait_progress
from bus.topics import COLLECTOR_EVENT

__all__ = ["MemorySpec", "run"]

STAGES = ("sessionizer", "analyzer", "sinks-jsonl")
CLOSE_WAIT_S = 4.0         # close_grace_s (2 s) + a sessionizer tick + the analyzer and sink


@dataclass(frozen=True, slots=True)
class MemorySpec:
    steps: tuple[int, ...] = (1, 100, 1000)
    churn_cycles: int = 3
    churn_sessions: int = 1000
    history_trees: int = 10            # full trees measured (bench/history_memory.py)
    history_cap: int | None = None     # None: the rules file's history_index_cap


@dataclass(slots=True)
class _Driver:
    feeder: Feeder
    counter: LineCounter
    stages: StageSet
    pids: list[int] = field(default_factory=list)
    roots: dict[int, int] = field(default_factory=dict)
    written: int = 0

    def remap(self, events: list[dict[str, Any]]) -> None:
        """Invented root tgids -> live pids (bench/pids.py), stable across open and close."""
        for e in events:
            if e["kind"] == "root" and e["tgid"] not in self.roots:
                self.roots[e["tgid"]] = self.pids[len(self.roots)]
        for e in events:
            for f in ("tgid", "tid", "ppid", "root"):
                if e.get(f) in self.roots:
                    e[f] = self.roots[e[f]]

    def send(self, events: list[dict[str, Any]], settle_s: float = 0.0) -> None:
        self.remap(events)
        for b in batches(events):
            self.feeder.send(COLLECTOR_EVENT, b)
        self.written += expected_records(events)
        wait_progress(self.counter.poll, self.written, quiet_s=5.0, timeout_s=120.0)
        time.sleep(settle_s)
        self.stages.check_alive()

    def rss(self) -> dict[str, float]:
        return {n: round(self.stages.rss_kb(n) / 1024, 1) for n in STAGES}


def run(spec: MemorySpec, workdir: Path) -> dict[str, Any]:
    dirs = BenchDirs.create(workdir / "memory")
    feeder = Feeder.bind("collector", dirs.bus)
    table: dict[str, dict[str, float]] = {}
    total = spec.steps[-1] + spec.churn_cycles * spec.churn_sessions
    with LivePids(total) as pids, StageSet(dirs) as stages:
        for name in ("sinks-jsonl", "analyzer", "sessionizer"):
            stages.start(name)
        watch = HeartbeatWatch.connect(dirs.bus, ["sessionizer", "analyzer"])
        try:
            stages.wait_ready(["sessionizer", "analyzer"], 30.0)
            feeder.wait_for_subscribers(1)
            time.sleep(SETTLE_S)
            d = _Driver(feeder, LineCounter.of(dirs.log("events")), stages, pids)
            table["0 open"] = d.rss()
            opened = 0
            for target in spec.steps:
                d.send(open_sessions(opened, target - opened), settle_s=0.5)
                opened = target
                table[f"{target} open"] = d.rss()
            d.send(close_sessions(0, opened), settle_s=CLOSE_WAIT_S)
            table[f"0 open, {opened} closed"] = d.rss()
            closed = opened
            for _ in range(spec.churn_cycles):
                d.send(open_sessions(closed, spec.churn_sessions), settle_s=0.2)
                d.send(close_sessions(closed, spec.churn_sessions), settle_s=CLOSE_WAIT_S)
                closed += spec.churn_sessions
                table[f"0 open, {closed} closed"] = d.rss()
            watch.pump(1.2)
            losses = loss_counters(watch.latest)
            written, expected = d.counter.lines, d.written
        finally:
            watch.close()
            feeder.close()
    first, top = f"{spec.steps[0]} open", f"{spec.steps[-1]} open"
    per = sum(table[top].values()) - sum(table[first].values())
    scale = 1000 / max(1, spec.steps[-1] - spec.steps[0])
    after_close = [k for k in table if "closed" in k]
    growth = (sum(table[after_close[-1]].values()) - sum(table[after_close[0]].values())
              if len(after_close) > 1 else None)
    history = history_memory.measure(spec.history_trees, spec.history_cap)
    return {"rss_mb_per_1000_sessions": round(per * scale, 1),
            "history_mb_per_1000_sessions_at_cap": history["history_mb_per_1000_sessions_at_cap"],
            "detail": {"rss_mb": table, "churn_growth_mb": None if growth is None else round(growth, 1),
                       "records_expected": expected, "records_written": written,
                       "loss_counters": losses, "history_at_cap": history["detail"]}}
