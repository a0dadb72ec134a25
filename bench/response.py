"""Response latency at 5k events/s: triggering event -> first signal delivered to the alerting tree.

    python -m bench --only response      # part of `make bench`

The same load as bench/latency.py (a background recording paced at the offered rate by a
stand-in collector, plus an alert probe every 20 ms whose event ``ts_ns`` is stamped when it is
sent), through the real sessionizer, analyzer and sinks, with the real responder and a rules file
whose response is ``kill_session``. Each probe session's root is a real idle process
(bench/pids.py), so the responder verifies it in /proc, opens a pidfd and really signals it:
latency = the responder's clock when ``pidfd_send_signal`` returned for the first SIGSTOP (the
tree can run no further) minus the triggering event's ``ts_ns``. It is read from the
``responder.result`` maps (``latency_ms``; ``done_ms`` is the last SIGKILL).

As root, the responder runs as under supervisord: through setpriv as ``casa`` with CAP_KILL only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import bus
from bench.feeder import Feeder
from bench.latency import LatencySpec, _sessions_needed, _summary, paced_run, start_pipeline
from bench.pids import LivePids
from bench.stages import CHECKOUT, BenchDirs, StageSet, cpu_seconds
from bus.background import BackgroundSubscriber
from responder.__main__ import SETPRIV

__all__ = ["run"]

RULES = CHECKOUT / "config" / "rules.original.json"
DRAIN_AFTER_S = 3.0
# One alert (and one killed tree) every 100 ms on top of 5k events/s: each kill_session scans
# /proc once after its first signal (~13 ms of CPU with the bench's ~1,000 idle processes), so
# the latency bench's one alert per 20 ms would measure the responder's scans starving the
# pipeline on 2 cores, not the response path. docs/operating.md gives the cost.
PROBE_INTERVAL_S = 0.1


class Results:
    """Collects the responder's result maps from its socket while the load runs."""

    def __init__(self, bus_dir: Path) -> None:
        self.maps: list[dict[str, Any]] = []
        self.tap = BackgroundSubscriber(bus_dir, ["responder"], ["responder."], self._on_envelope,
                                        name="responder-results")

    def _on_envelope(self, env: bus.Envelope, _recv_ns: int) -> None:
        if env.topic == "responder.result":
            self.maps.extend(env.events)

    def start(self) -> None:
        self.tap.start()

    def close(self) -> None:
        self.tap.stop()


def _rules(dirs_root: Path) -> Path:
    doc = json.loads(RULES.read_text())
    doc["response"] = {"on_alert": "kill_session"}
    path = dirs_root / "rules-response.json"
    dirs_root.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2))
    path.chmod(0o644)
    return path


def _start_responder(dirs: BenchDirs) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "responder", "--bus-dir", str(dirs.bus), "--state-dir", str(dirs.state)]
    if os.geteuid() == 0:
        argv = [*SETPRIV, *argv]
    out = open(dirs.logs / "responder.stderr", "ab")
    try:
        return subprocess.Popen(argv, cwd=CHECKOUT, env=dirs.env(), stdout=out, stderr=out,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        out.close()


def one_rate(rate: int, spec: LatencySpec, root: Path) -> dict[str, Any]:
    dirs = BenchDirs.create(root, rules=_rules(root))
    feeder = Feeder.bind("collector", dirs.bus)
    rec, n_probes = _sessions_needed(rate, spec, PROBE_INTERVAL_S)
    with StageSet(dirs) as stages:
        start_pipeline(stages)
        responder = _start_responder(dirs)
        results = Results(dirs.bus)
        results.start()
        try:
            with LivePids(rec.sessions + n_probes) as pids:
                probes = paced_run(stages, feeder, rate, spec, pids, PROBE_INTERVAL_S)
                time.sleep(DRAIN_AFTER_S)
                stages.check_alive()
                alive = responder.poll() is None
                used = cpu_seconds(responder.pid) if alive else None
                cpu_s = None if used is None else round(used, 2)
        finally:
            results.close()
            responder.terminate()
            responder.wait(10)
            feeder.close()
    return {**_report(rate, probes, results.maps, alive), "responder_cpu_s": cpu_s,
            "probe_interval_s": PROBE_INTERVAL_S}


def _report(rate: int, probes: dict[int, int], maps: list[dict[str, Any]], alive: bool) -> dict[str, Any]:
    first, last, received, own, errors, empty = [], [], [], [], 0, 0
    for m in maps:
        r = m.get("response", {})
        if (m.get("event") or {}).get("tgid") not in probes:
            continue                                   # a warm-up probe
        errors += len(r.get("errors") or [])
        if r.get("latency_ms") is None:
            empty += 1
            continue
        first.append(r["latency_ms"])
        if r.get("received_ms") is not None:
            received.append(r["received_ms"])
            own.append(r["latency_ms"] - r["received_ms"])     # the responder's own share
        last.append(r["done_ms"])
    return {"offered_events_per_s": rate, "probes": len(probes), "responses": len(first) + empty,
            "responses_without_signal": empty, "errors": errors, "responder_alive": alive,
            "decision_received": _summary(received), "responder_share": _summary(own),
            "first_signal": _summary(first),
            "last_signal": _summary(last)}


def run(spec: LatencySpec, workdir: Path) -> dict[str, Any]:
    rate = spec.rates[0]
    detail = one_rate(rate, spec, workdir / f"response-{rate}")
    return {"response_p50_ms": detail["first_signal"]["p50_ms"],
            "response_p99_ms": detail["first_signal"]["p99_ms"],
            "detail": {str(rate): detail}}
