"""Latency at an offered load: event (kernel time stand-in) -> decision on the bus, and -> alert on disk.

    python -m bench latency             # part of `make bench`: 5k and 20k events/s

The replayer stands in for the collector and paces a background recording (bench/recording.py)
at the offered rate, sending what is due every TICK_S (as the collector does per ring-buffer poll).
Every PROBE_INTERVAL_S it also sends an alert probe (recording.alert_session: a file written in
/tmp and then executed, which the bundled rules score 9, ALERT). Each event's ``ts_ns`` is stamped
when the replayer sends it: the stand-in for the kernel timestamp, so the collector's own share
(ring buffer -> decode -> publish, measured separately in docs/performance.md) is not included.

Measured per probe (matched by the tgid of its triggering exec):
* decision on the bus: a bench.drain subscribed to analyzer-0 stamps each analyzer.decision when
  it arrives; latency = arrival - ts_ns;
* alert record on disk: a bench.tail polls alert.log every 0.5 ms; latency = line seen - ts_ns.

When run as root it also measures the whole real chain without background load
(:func:`real_collector`): real processes write and execute a script under /tmp, the real
collector sees them, and latency = alert line on disk - the exec's kernel timestamp.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.drain import load_saved
from bench.feeder import Feeder
from bench.pids import LivePids, rebase_roots
from bench.recording import RecordingSpec, alert_session, alert_trigger, generate
from bench.stages import BenchDirs, HeartbeatWatch, StageSet
from bench.throughput import SETTLE_S, loss_counters, start_drain, stop_drain
from bus.topics import COLLECTOR_EVENT

__all__ = ["LatencySpec", "run", "percentile"]

TICK_S = 0.002
REAL_PROBES_DEFAULT = 20
PROBE_INTERVAL_S = 0.02
DRAIN_AFTER_S = 3.0


@dataclass(frozen=True, slots=True)
class LatencySpec:
    rates: tuple[int, ...] = (5_000, 20_000)
    duration_s: float = 12.0
    warmup_s: float = 2.0          # probes sent before this are not counted
    real_probes: int = REAL_PROBES_DEFAULT   # real alerts through the real collector (root only)


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (the original's runtime_overhead.sh definition)."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def _sessions_needed(rate: int, spec: LatencySpec,
                     probe_interval_s: float = PROBE_INTERVAL_S) -> tuple[RecordingSpec, int]:
    """The background recording for ``rate`` and the number of probe sessions."""
    n_events = int(rate * spec.duration_s)
    rec = RecordingSpec(sessions=max(50, n_events // 230 + 50), concurrent=200, seed=rate)
    return rec, int(spec.duration_s / probe_interval_s) + 10


def _pace(feeder: Feeder, rate: int, spec: LatencySpec, pids: list[int],
          probe_interval_s: float = PROBE_INTERVAL_S) -> dict[int, int]:
    """Send background + probes at ``rate`` for the duration; return {probe tgid: ts_ns}."""
    rec, n_probes = _sessions_needed(rate, spec, probe_interval_s)
    background = iter(rebase_roots(generate(rec), pids[:rec.sessions]))
    probe_pids = pids[rec.sessions:]
    probes: dict[int, int] = {}
    start = time.monotonic()
    sent = probe_no = 0
    next_probe = start
    while True:
        now = time.monotonic()
        elapsed = now - start
        if elapsed >= spec.duration_s:
            break
        batch: list[dict[str, Any]] = []
        if now >= next_probe:
            session = rebase_roots(alert_session(probe_no), [probe_pids[probe_no]])
            probe_no += 1
            next_probe += probe_interval_s
            batch += session
            if elapsed >= spec.warmup_s:
                probes[alert_trigger(session)["tgid"]] = 0
        due = int(rate * elapsed) - sent - len(batch)
        for _ in range(max(0, due)):
            batch.append(next(background))
        if batch:
            sent += len(batch)
            for i in range(0, len(batch), 64):
                feeder.send(COLLECTOR_EVENT, batch[i:i + 64])
            for e in batch:
                if e["kind"] == "exec" and e["tgid"] in probes:
                    probes[e["tgid"]] = e["ts_ns"]
        if feeder.publisher.heartbeat_due():
            feeder.heartbeat()
        time.sleep(max(0.0, TICK_S - (time.monotonic() - now)))
    return probes


def _summary(values_ms: list[float]) -> dict[str, Any]:
    return {"n": len(values_ms), "p50_ms": _r(percentile(values_ms, 50)), "p99_ms": _r(percentile(values_ms, 99)),
            "max_ms": _r(max(values_ms) if values_ms else None),
            "mean_ms": _r(statistics.fmean(values_ms) if values_ms else None)}


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def _disk_latencies(observed: Path, probes: dict[int, int]) -> list[float]:
    out = []
    if not observed.exists():
        return out
    for raw in observed.read_text().splitlines():
        rec = json.loads(raw)
        try:
            line = json.loads(rec["line"])
        except ValueError:
            continue
        pid = (line.get("event") or {}).get("pid")
        if pid in probes and probes[pid]:
            out.append((rec["observed_ns"] - probes[pid]) / 1e6)
    return out


def start_pipeline(stages: StageSet) -> None:
    """The stages a paced load runs through: sessionizer, analyzer and the JSONL sink."""
    for name in ("sinks-jsonl", "analyzer", "sessionizer"):
        stages.start(name)


def paced_run(stages: StageSet, feeder: Feeder, rate: int, spec: LatencySpec, pids: list[int],
              probe_interval_s: float = PROBE_INTERVAL_S) -> dict[int, int]:
    """Once the pipeline is ready and subscribed to the replayer: the paced load with its alert
    probes (:func:`_pace`), then a heartbeat that flushes the replayer. {probe tgid: ts_ns}."""
    stages.wait_ready(["sessionizer", "analyzer"], 30.0)
    feeder.wait_for_subscribers(1)
    time.sleep(SETTLE_S)
    probes = _pace(feeder, rate, spec, pids, probe_interval_s)
    feeder.heartbeat()
    return probes


def one_rate(rate: int, spec: LatencySpec, dirs: BenchDirs) -> dict[str, Any]:
    feeder = Feeder.bind("collector", dirs.bus)
    decisions = dirs.root / f"decisions-{rate}.jsonl"
    observed = dirs.root / f"alert-observed-{rate}.jsonl"
    rec, n_probes = _sessions_needed(rate, spec)
    with StageSet(dirs) as stages:
        start_pipeline(stages)
        tail = subprocess.Popen([sys.executable, "-m", "bench.tail", "--file", str(dirs.log("alert")),
                                 "--out", str(observed)], stdout=subprocess.PIPE, text=True, env=dirs.env())
        drain = start_drain(dirs, "analyzer-0", "--decisions", str(decisions))
        watch = HeartbeatWatch.connect(dirs.bus, ["sessionizer", "analyzer"])
        try:
            with LivePids(rec.sessions + n_probes) as pids:
                probes = paced_run(stages, feeder, rate, spec, pids)
                deadline = time.monotonic() + DRAIN_AFTER_S
                while time.monotonic() < deadline:
                    watch.pump(0.1)
                stages.check_alive()
                counters = dict(watch.latest)
        finally:
            watch.close()
            report = stop_drain(drain)
            tail.terminate()
            tail.wait(30)
            feeder.close()
    bus_ms = []
    for raw in decisions.read_text().splitlines():
        d = json.loads(raw)
        if d["tgid"] in probes and d["action"] == "ALERT" and probes[d["tgid"]]:
            bus_ms.append((d["recv_ns"] - probes[d["tgid"]]) / 1e6)
    disk_ms = _disk_latencies(observed, probes)
    return {"offered_events_per_s": rate, "probes": len(probes), "decision_on_bus": _summary(bus_ms),
            "alert_on_disk": _summary(disk_ms), "loss_counters": loss_counters(counters),
            "decision_drain_lost_messages": report.get("lost_messages", 0)}


def run(spec: LatencySpec, workdir: Path) -> dict[str, Any]:
    detail: dict[Any, Any] = {r: one_rate(r, spec, BenchDirs.create(workdir / f"latency-{r}"))
                              for r in spec.rates}
    if os.geteuid() == 0 and spec.real_probes:
        detail["real_collector"] = real_collector(BenchDirs.create(workdir / "latency-real"),
                                                  spec.real_probes)
    out: dict[str, Any] = {}
    if 5_000 in detail or spec.rates:
        low = detail.get(5_000) or detail[spec.rates[0]]
        out["alert_p50_ms_at_5k"] = low["alert_on_disk"]["p50_ms"]
        out["alert_p99_ms_at_5k"] = low["alert_on_disk"]["p99_ms"]
    if len(spec.rates) > 1:
        high = detail.get(20_000) or detail[spec.rates[-1]]
        out["alert_p99_ms_at_20k"] = high["alert_on_disk"]["p99_ms"]
    out["detail"] = {str(r): v for r, v in detail.items()}
    return out


# ---------------------------------------------------------------- with the real collector

REAL_PROBES = REAL_PROBES_DEFAULT
REAL_PROBE_GAP_S = 0.25
# "; true" keeps bash from exec'ing the script in place: the sessionizer does not log a root's own
# re-exec, and a real agent runs its tools as children.
REAL_SCRIPT = 'mkdir -p "$1" && printf "#!/bin/sh\\ntrue\\n" > "$1/helper.sh" && chmod +x "$1/helper.sh" && "$1/helper.sh"; true'


def rfc3339_ns(stamp: str) -> int:
    """``2026-11-26T06:28:37.493597652Z`` (or ``+01:00``) -> ns since the epoch."""
    import datetime as dt
    import re
    m = re.fullmatch(r"([^.]+)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", stamp)
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp: {stamp!r}")
    head, digits, zone = m.group(1), m.group(2) or "", m.group(3)
    base = dt.datetime.fromisoformat(head + ("+00:00" if zone == "Z" else zone))
    return int(base.timestamp()) * 1_000_000_000 + int(digits.ljust(9, "0")[:9])


STREAMS = (("collector", "collector.event"), ("sessionizer", "sessionizer.event"),
           ("analyzer-0", "analyzer.decision"))


def _sent_times(frames_file: Path, topic: str) -> dict[tuple[int, int], int]:
    """(tgid, ts_ns) of each exec in ``topic`` -> sent_ns of the envelope that carried it.

    For analyzer.decision the key is the triggering event's."""
    out: dict[tuple[int, int], int] = {}
    if not frames_file.exists():
        return out
    for env in load_saved(frames_file):
        if env.topic != topic:
            continue
        for e in env.events:
            ev = e.get("event", e) if topic.endswith(".decision") else e
            if ev.get("kind") == "exec":
                out.setdefault((ev.get("tgid"), ev.get("ts_ns")), env.sent_ns)
    return out


def _breakdown(dirs: BenchDirs, observed: dict[tuple[int, int], int]) -> dict[str, Any]:
    """Median time spent per hop for the alerts: kernel -> collector sent -> sessionizer sent ->
    analyzer decision sent -> alert line on disk."""
    sent = [_sent_times(dirs.root / f"{stream}.frames", topic) for stream, topic in STREAMS]
    hops: dict[str, list[float]] = {"collector": [], "sessionizer": [], "analyzer": [], "sink_to_disk": []}
    for key, disk_ns in observed.items():
        points = [s.get(key) for s in sent]
        if any(p is None for p in points):
            continue
        chain = [key[1], *points, disk_ns]
        for name, a, b in zip(hops, chain, chain[1:]):
            hops[name].append((b - a) / 1e6)
    return {name: _summary(v) for name, v in hops.items()}


def real_collector(dirs: BenchDirs, probes: int = REAL_PROBES) -> dict[str, Any]:
    """Kernel timestamp -> alert on disk with the whole real stack and real processes, unloaded.

    A copy of bash named like the bench root (so the collector tracks it) writes a script under
    /tmp and executes it: the README's worked example, done for real. Latency = when the alert
    line is seen on disk - the exec's kernel timestamp (the record's ``timestamp``). Subscribers
    on every stream keep the envelopes, so the time is also broken down per hop (``sent_ns``).
    """
    import shutil as _sh

    from bench.recording import ROOT_COMM
    from bench.throughput import start_drain
    shell = dirs.root / ROOT_COMM
    _sh.copy2("/bin/bash", shell)
    shell.chmod(0o755)
    observed = dirs.root / "alert-observed-real.jsonl"
    with StageSet(dirs) as stages:
        stages.start("collector", ["--config", str(dirs.config), "--bus-dir", str(dirs.bus),
                                   "--pid-file", str(dirs.pid_file)])
        for name in ("sinks-jsonl", "analyzer", "sessionizer"):
            stages.start(name)
        tail = subprocess.Popen([sys.executable, "-m", "bench.tail", "--file", str(dirs.log("alert")),
                                 "--out", str(observed)], stdout=subprocess.PIPE, text=True, env=dirs.env())
        drains = [start_drain(dirs, stream, "--save", str(dirs.root / f"{stream}.frames"))
                  for stream, _ in STREAMS]
        try:
            stages.wait_ready(["collector", "sessionizer", "analyzer"], 60.0)
            time.sleep(SETTLE_S)
            for i in range(probes):
                target = f"/tmp/casa-bench-real-{os.getpid()}-{i}"
                subprocess.run([str(shell), "-c", REAL_SCRIPT, "probe", target], check=False, timeout=30)
                time.sleep(REAL_PROBE_GAP_S)
            time.sleep(DRAIN_AFTER_S)
            stages.check_alive()
        finally:
            for d in drains:
                stop_drain(d)
            tail.terminate()
            tail.wait(30)
    lat = []
    on_disk: dict[tuple[int, int], int] = {}
    for raw in observed.read_text().splitlines() if observed.exists() else []:
        rec = json.loads(raw)
        try:
            line = json.loads(rec["line"])
            ts = rfc3339_ns(line["timestamp"])
        except (ValueError, KeyError):
            continue
        lat.append((rec["observed_ns"] - ts) / 1e6)
        on_disk[(line.get("event", {}).get("pid"), ts)] = rec["observed_ns"]
    return {"probes": probes, "alerts": len(lat), "alert_on_disk": _summary(lat),
            "per_hop": _breakdown(dirs, on_disk)}
