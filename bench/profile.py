"""Where a stage's time goes: its pure core, in-process, over the synthetic recording, under cProfile.

    python -m bench.profile sessionizer [--sessions 500] [--top 25]
    python -m bench.profile analyzer    [--sessions 500] [--top 25]
    python -m bench.profile sinks       [--sessions 500] [--top 25]

Prints the core's events/s without sockets (the ceiling of the stage on one core, before the bus
costs of decode/encode) and the top functions by own time. The analyzer is fed what the
sessionizer core produces from the same recording. Use it before and after a change to a hot path.

``sinks`` is the jsonl sink end to end except the socket: the analyzer core's output, packed into
bus envelopes as the analyzer publishes them, decoded by a bus.Subscriber and written by the
JsonlSink core to files in a temporary directory (bench/sink_profile.py: the schema-2 fields the
collector adds are filled in, since the synthetic recording has none).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.recording import RecordingSpec, generate
from bench.stages import CHECKOUT, bench_config

Out = list[tuple[str, dict[str, Any]]]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.profile")
    p.add_argument("stage", choices=["sessionizer", "analyzer", "sinks"])
    p.add_argument("--sessions", type=int, default=500)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--rules", default=str(CHECKOUT / "rules.json"))
    return p.parse_args(argv)


def _stamped(sessions: int) -> list[dict[str, Any]]:
    events = generate(RecordingSpec(sessions=sessions))
    now = time.time_ns()
    for i, e in enumerate(events):
        e["ts_ns"] = now + i * 20_000
    return events


def sessionizer_core(rules: str) -> Any:
    """A Sessionizer with the bench profile (bench/stages.py) and ``rules``."""
    from sessionizer.core import Sessionizer
    from sessionizer.settings import load_settings
    cfg = Path(tempfile.mkdtemp(prefix="casa-bench-profile-")) / "casa.json"
    cfg.write_text(json.dumps(bench_config()))
    return Sessionizer(load_settings(rules, cfg))


def run_sessionizer(core: Any, events: list[dict[str, Any]]) -> Out:
    out: Out = []
    for e in events:
        out += core.handle(e, e["ts_ns"])
    return out


def run_analyzer(core: Any, messages: Out) -> int:
    n = 0
    for topic, m in messages:
        n += len(core.handle((topic, m), m.get("ts_ns") or m.get("updated_ns") or 0))
    return n


def run_analyzer_output(core: Any, events: list[dict[str, Any]], rules: str) -> Out:
    """What the analyzer core publishes for the recording: (topic, map) in order, ending with the
    ``closed`` snapshot of every session (with its recent_events), as when their roots exit and
    the sessionizer's timers close them (the cores here are never ticked)."""
    from analyzer.core import Analyzer
    from policy import load_policy
    analyzer = Analyzer(load_policy(rules))
    out: Out = []
    opened: list[dict[str, Any]] = []
    for topic, m in run_sessionizer(core, events):
        out += analyzer.handle((topic, m), m.get("ts_ns") or m.get("updated_ns") or 0)
        if topic.endswith(".session") and m.get("state") == "opened":
            opened.append(m)
    end = max(e["ts_ns"] for e in events) + 1
    for m in opened:
        out += analyzer.handle(("sessionizer.session", {**m, "state": "closed", "closed_ns": end,
                                                         "updated_ns": end, "ts_ns": end}), end)
    return out


def profiled(fn: Any, *args: Any) -> tuple[float, pstats.Stats]:
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    fn(*args)
    prof.disable()
    elapsed = time.perf_counter() - t
    return elapsed, pstats.Stats(prof, stream=io.StringIO())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    events = _stamped(args.sessions)
    sess = sessionizer_core(args.rules)
    if args.stage == "sinks":
        from bench.sink_profile import profile_sinks
        return profile_sinks(run_analyzer_output(sess, events, args.rules), args.top)
    if args.stage == "sessionizer":
        t = time.perf_counter()
        run_sessionizer(sessionizer_core(args.rules), [dict(e) for e in events])
        plain = time.perf_counter() - t
        _, stats = profiled(run_sessionizer, sess, events)
        n = len(events)
    else:
        from analyzer.core import Analyzer
        from policy import load_policy
        messages = run_sessionizer(sess, events)
        t = time.perf_counter()
        run_analyzer(Analyzer(load_policy(args.rules)), messages)
        plain = time.perf_counter() - t
        _, stats = profiled(run_analyzer, Analyzer(load_policy(args.rules)), messages)
        n = len(messages)
    print(f"{args.stage} core: {n} messages in {plain:.2f} s = {n / plain:,.0f}/s without profiling")
    stats.sort_stats("tottime").print_stats(args.top)
    print(stats.stream.getvalue())  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main())
