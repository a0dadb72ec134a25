"""End-to-end and per-stage throughput: a synthetic recording replayed as fast as the stages take it.

    python -m bench throughput          # part of `make bench`

Runs, in one run on the same recording (bench/recording.py):

1. ``null``: the bus ceiling — replayer -> relay -> relay -> counter (bench/relay.py: decode and
   re-publish, no analysis), the same chain shape as CASA's.
2. ``e2e``: replayer (in place of the collector) -> sessionizer -> analyzer -> sinks jsonl; the run
   ends when events.log holds one line per accepted event. Rate = recording events / (last line
   on disk - first send). Loss = lines missing + every loss counter of every stage's heartbeat.
3. ``e2e_paced``: the same chain fed at a steady ``paced_rate`` (50,000 events/s), in the
   collector's rhythm (every 5 ms, the batches due by then), as a busy agent would feed it. It
   shows whether the chain keeps up in the steady state, where each stage wakes for a few
   batches at a time instead of draining a backlog: delivered rate = recording events / (last
   line on disk - first send), ``lag_s`` = last line on disk - last send (a chain that keeps up
   lags by milliseconds; one that falls behind by its growing backlog).
4. Each stage alone, fed what the stage before it produced (kept by bench/drain.py with --save):
   sessionizer, analyzer, sinks jsonl.

The replayer pre-packs the recording (bench/feeder.py), so on 2 cores almost all CPU goes to the
stages. It never drops: at the high-water mark it waits, so a slow stage shows as a lower rate,
not as loss; loss can only come from the stages themselves.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.drain import load_saved
from bench.feeder import Feeder, prepack
from bench.pids import LivePids, rebase_roots
from bench.recording import RecordingSpec, expected_records, generate
from bench.stages import BenchDirs, HeartbeatWatch, StageSet
from bench.tail import Appended
from bus.envelope import pack_events
from bus.topics import COLLECTOR_EVENT

__all__ = ["ThroughputSpec", "run", "LineCounter", "start_drain", "stop_drain", "loss_counters"]

SETTLE_S = 0.7            # after every heartbeat arrived: lets subscriptions propagate down the chain
POLL_S = 0.02


@dataclass(frozen=True, slots=True)
class ThroughputSpec:
    recording: RecordingSpec = field(default_factory=RecordingSpec)
    rate_hint: float = 60_000.0   # spacing of the recording's ts_ns (events/s)
    paced_rate: float = 50_000.0  # the steady-state run's offered rate (events/s)
    quiet_s: float = 4.0          # no progress for this long after the replay ends: done
    timeout_s: float = 600.0


@dataclass(slots=True)
class LineCounter:
    """Counts lines appended to a file, remembering when it last grew (polled). Counts newlines
    rather than splitting lines: events.log grows by tens of MB/s during a run."""

    appended: Appended
    lines: int = 0
    grew_at_ns: int = 0

    @classmethod
    def of(cls, path: Path) -> LineCounter:
        return cls(Appended(path))

    def poll(self) -> int:
        chunk = self.appended.read()
        if chunk:
            self.lines += chunk.count(b"\n")
            self.grew_at_ns = time.time_ns()
        return self.lines


def wait_progress(probe: Callable[[], int], target: int | None, quiet_s: float, timeout_s: float) -> int:
    """Poll ``probe`` until it reaches ``target`` or stops changing for ``quiet_s``."""
    deadline = time.monotonic() + timeout_s
    last, changed = -1, time.monotonic()
    while time.monotonic() < deadline:
        value = probe()
        if target is not None and value >= target:
            return value
        if value != last:
            last, changed = value, time.monotonic()
        elif time.monotonic() - changed > quiet_s:
            return value
        time.sleep(POLL_S)
    return last


def start_drain(dirs: BenchDirs, stream: str, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "bench.drain", "--bus-dir", str(dirs.bus),
                             "--stream", stream, *extra], stdout=subprocess.PIPE, text=True, env=dirs.env())
    if proc.stdout is None or proc.stdout.readline().strip() != "subscribed":
        raise RuntimeError(f"bench.drain on {stream} did not start")
    return proc


def stop_drain(proc: subprocess.Popen[str]) -> dict[str, Any]:
    proc.terminate()
    out, _ = proc.communicate(timeout=120)
    lines = out.strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


def loss_counters(counters: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Every heartbeat counter that names loss, per stage (nonzero only)."""
    out: dict[str, int] = {}
    for stage, c in counters.items():
        for k, v in _flatten(c):
            if isinstance(v, int) and not isinstance(v, bool) and v and any(
                    w in k for w in ("lost", "undelivered", "malformed", "unknown_version", "dropped_bus")):
                out[f"{stage}.{k}"] = v
    return out


def _flatten(c: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for k, v in c.items():
        if isinstance(v, dict):
            items += _flatten(v, f"{prefix}{k}.")
        else:
            items.append((f"{prefix}{k}", v))
    return items


def _sent_events(watch: HeartbeatWatch, stage: str) -> Callable[[], int]:
    def probe() -> int:
        watch.pump(0.05)
        return int(watch.latest.get(stage, {}).get("sent_events", 0))
    return probe


def _received_events(watch: HeartbeatWatch, stage: str) -> Callable[[], int]:
    def probe() -> int:
        watch.pump(0.05)
        c = watch.latest.get(stage, {})
        return int(max(c.get("bus_received_events", 0), c.get("received_events", 0)))
    return probe


def saved_messages(path: Path) -> list[tuple[str, list[dict[str, Any]]]]:
    """(topic, events) per message of a bench.drain --save file, in arrival order."""
    return [(env.topic, env.events) for env in load_saved(path)]


def _replay_saved(feeder: Feeder, messages: list[tuple[str, list[dict[str, Any]]]]) -> int:
    packed = [(t, len(ev), pack_events(ev)) for t, ev in messages]     # before timing starts
    t0 = time.time_ns()
    for topic, count, blob in packed:
        feeder.send_packed(topic, [(count, blob)])
    feeder.heartbeat()
    return t0


def null_chain(events: list[dict[str, Any]], spec: ThroughputSpec, dirs: BenchDirs) -> dict[str, Any]:
    feeder = Feeder.bind("collector", dirs.bus)
    relays = [subprocess.Popen([sys.executable, "-m", "bench.relay", "--bus-dir", str(dirs.bus),
                                "--from", a, "--to", b], env=dirs.env())
              for a, b in (("collector", "sessionizer"), ("sessionizer", "analyzer-0"))]
    watch = HeartbeatWatch.connect(dirs.bus, ["analyzer"])
    try:
        drain = start_drain(dirs, "analyzer-0")
        feeder.wait_for_subscribers(1)
        watch.wait(["analyzer"], 20.0)
        time.sleep(SETTLE_S)
        blobs = prepack(events, spec.rate_hint)
        t0 = time.time_ns()
        feeder.send_packed(COLLECTOR_EVENT, blobs)
        feeder.heartbeat()
        wait_progress(_sent_events(watch, "analyzer"), len(events), spec.quiet_s, spec.timeout_s)
        report = stop_drain(drain)
    finally:
        for r in relays:
            r.terminate()
            r.wait(10)
        watch.close()
        feeder.close()
    end = report.get("last_ns", {}).get("analyzer.event", t0)
    return {"events": len(events), "received": report.get("events", 0),
            "lost_messages": report.get("lost_messages", 0),
            "events_per_s": round(len(events) / max((end - t0) / 1e9, 1e-9))}


def _stage_chain(dirs: BenchDirs, names: list[str]) -> StageSet:
    stages = StageSet(dirs)
    for name in names:
        stages.start(name)
    return stages


def casa_e2e(events: list[dict[str, Any]], spec: ThroughputSpec, dirs: BenchDirs,
             rate: float | None = None) -> dict[str, Any]:
    """Replayer -> sessionizer -> analyzer -> sinks jsonl, end measured on events.log; as fast as
    the chain takes it, or paced at ``rate`` events/s."""
    feeder = Feeder.bind("collector", dirs.bus)
    expected = expected_records(events)
    with _stage_chain(dirs, ["sinks-jsonl", "analyzer", "sessionizer"]) as stages:
        watch = HeartbeatWatch.connect(dirs.bus, ["sessionizer", "analyzer"])
        try:
            stages.wait_ready(["analyzer", "sessionizer"], 30.0)
            feeder.wait_for_subscribers(1)
            time.sleep(SETTLE_S)
            counter = LineCounter.of(dirs.log("events"))
            counter.poll()
            start_lines = counter.lines
            blobs = prepack(events, rate or spec.rate_hint)
            cpu0 = stages.cpu_all()
            t0 = time.time_ns()
            feeder.send_packed(COLLECTOR_EVENT, blobs, rate)
            sent_ns = time.time_ns()
            sent_s = (sent_ns - t0) / 1e9
            feeder.heartbeat()

            def lines() -> int:
                watch.pump(0)
                return counter.poll() - start_lines
            written = wait_progress(lines, expected, spec.quiet_s, spec.timeout_s)
            cpu = cpu_per_event(cpu0, stages.cpu_all(), len(events))
            end_wait = time.monotonic() + 2.5           # one more heartbeat of every stage
            while time.monotonic() < end_wait:
                watch.pump(0.1)
            stages.check_alive()
            counters = dict(watch.latest)
            rss = {n: stages.rss_kb(n) for n in list(stages.procs)}
        finally:
            watch.close()
            feeder.close()
    elapsed = (counter.grew_at_ns - t0) / 1e9 if counter.grew_at_ns > t0 else float("nan")
    losses = loss_counters(counters)
    return {"events": len(events), "expected_records": expected, "written_records": written,
            "replay_s": round(sent_s, 3), "elapsed_s": round(elapsed, 3),
            "lag_s": round((counter.grew_at_ns - sent_ns) / 1e9, 3),
            "events_per_s": round(len(events) / elapsed) if elapsed == elapsed and elapsed > 0 else None,
            "lost_events": max(0, expected - written) + sum(losses.values()),
            "loss_counters": losses, "stage_counters": counters, "rss_kb_after": rss,
            "cpu_us_per_event": cpu}


def cpu_per_event(before: dict[str, float], after: dict[str, float], events: int) -> dict[str, float]:
    """CPU microseconds each stage spent per input event of the replay (the per-stage budget)."""
    return {n: round((after[n] - before[n]) * 1e6 / max(events, 1), 2) for n in after if n in before}


def _isolated(dirs: BenchDirs, stage: str, upstream: str, own_stream: str,
              messages: list[tuple[str, list[dict[str, Any]]]], spec: ThroughputSpec,
              save: Path | None) -> dict[str, Any]:
    feeder = Feeder.bind(upstream, dirs.bus)
    total = sum(len(ev) for _, ev in messages)
    with _stage_chain(dirs, [stage]) as stages:
        name = "sinks" if stage == "sinks-jsonl" else stage
        drain = None if save is None else start_drain(dirs, own_stream, "--save", str(save))
        try:
            if stage != "sinks-jsonl":
                stages.wait_ready([stage], 30.0)
            feeder.wait_for_subscribers(1 if stage == "sinks-jsonl" else 1)
            time.sleep(SETTLE_S)
            counter = LineCounter.of(dirs.log("events"))
            counter.poll()
            start_lines = counter.lines
            cpu0 = stages.cpu_all()
            t0 = _replay_saved(feeder, messages)
            if stage == "sinks-jsonl":
                target = sum(len(ev) for t, ev in messages if t.endswith(".event"))
                got = wait_progress(lambda: counter.poll() - start_lines, target, spec.quiet_s, spec.timeout_s)
                end_ns, detail = counter.grew_at_ns, {"written_records": got, "expected_records": target}
            else:
                watch = HeartbeatWatch.connect(dirs.bus, [stage])
                try:      # a busy stage heartbeats late: first everything in, then output quiet
                    wait_progress(_received_events(watch, name), total, spec.timeout_s, spec.timeout_s)
                    wait_progress(_sent_events(watch, name), None, spec.quiet_s, spec.timeout_s)
                finally:
                    watch.close()
                report = stop_drain(drain) if drain else {}
                drain = None
                end_ns = report.get("last_ns", {}).get(f"{name}.event", t0)
                detail = {"output_events": report.get("events_by_topic", {}),
                          "lost_messages": report.get("lost_messages", 0)}
            stages.check_alive()
            cpu = cpu_per_event(cpu0, stages.cpu_all(), total)
        finally:
            if drain is not None:
                stop_drain(drain)
            feeder.close()
    elapsed = max((end_ns - t0) / 1e9, 1e-9)
    return {"input_events": total, "elapsed_s": round(elapsed, 3),
            "events_per_s": round(total / elapsed), "cpu_us_per_event": cpu, **detail}


def run(spec: ThroughputSpec, workdir: Path) -> dict[str, Any]:
    with LivePids(spec.recording.sessions) as pids:
        return _run(spec, workdir, pids)


def _run(spec: ThroughputSpec, workdir: Path, pids: list[int]) -> dict[str, Any]:
    events = rebase_roots(generate(spec.recording), pids)
    result: dict[str, Any] = {"recording": {"events": len(events), "sessions": spec.recording.sessions,
                                            "concurrent": spec.recording.concurrent}}
    result["null_chain"] = null_chain(generate(spec.recording), spec, BenchDirs.create(workdir / "null"))
    result["e2e"] = casa_e2e(events, spec, BenchDirs.create(workdir / "e2e"))
    result["e2e_paced"] = casa_e2e(rebase_roots(generate(spec.recording), pids), spec,
                                   BenchDirs.create(workdir / "e2e-paced"), spec.paced_rate)
    iso = BenchDirs.create(workdir / "isolated")
    coll = [(COLLECTOR_EVENT, b) for b in _batches(rebase_roots(generate(spec.recording), pids))]
    result["sessionizer"] = _isolated(iso, "sessionizer", "collector", "sessionizer", coll, spec,
                                      iso.root / "sessionizer.frames")
    sess_out = saved_messages(iso.root / "sessionizer.frames")
    result["analyzer"] = _isolated(iso, "analyzer", "sessionizer", "analyzer-0", sess_out, spec,
                                   iso.root / "analyzer.frames")
    an_out = saved_messages(iso.root / "analyzer.frames")
    result["sinks_jsonl"] = _isolated(iso, "sinks-jsonl", "analyzer-0", "", an_out, spec, None)
    e2e, null, paced = result["e2e"], result["null_chain"], result["e2e_paced"]
    return {"e2e_events_per_s": e2e["events_per_s"], "e2e_lost_events": e2e["lost_events"],
            "e2e_paced_events_per_s": paced["events_per_s"], "e2e_paced_lag_s": paced["lag_s"],
            "e2e_paced_lost_events": paced["lost_events"],
            "e2e_vs_null_chain": round(e2e["events_per_s"] / null["events_per_s"], 3)
            if e2e["events_per_s"] and null["events_per_s"] else None,
            "detail": result}


def _batches(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    now = time.time_ns()
    for i, e in enumerate(events):
        e["ts_ns"] = now + i * 20_000
    return [events[i:i + 64] for i in range(0, len(events), 64)]
