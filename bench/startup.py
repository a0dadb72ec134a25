"""Start-up: from starting the stack to the collector attached and the pipeline ready.

    python -m bench startup             # root; part of `make bench`

Starts the collector (root) and the sessionizer, analyzer and jsonl sink (user casa) at once,
exactly as supervisord does, with the bench profile (bench/stages.py). From the start on, every
PROBE_INTERVAL_S it launches a short-lived tracked root (the workload binary copied to the
profile's root name, bench/overhead.py) and watches events.log. The pipeline is ready when the
first probe's events are on disk: ``startup_s`` = that moment - the start. Also reported: when
each stage's first heartbeat arrived (collector attached: its first heartbeat comes after attach).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.overhead import build_workload
from bench.stages import BenchDirs, HeartbeatWatch, StageSet

__all__ = ["StartupSpec", "run"]

PROBE_INTERVAL_S = 0.1
PROBE_LIFETIME_MS = 200


@dataclass(frozen=True, slots=True)
class StartupSpec:
    repeats: int = 3
    timeout_s: float = 30.0


def _probe_pids_on_disk(path: Path, pids: set[int]) -> bool:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return False
    for line in text.splitlines():
        try:
            if json.loads(line).get("pid") in pids:
                return True
        except ValueError:
            continue
    return False


def once(spec: StartupSpec, dirs: BenchDirs, tracked: Path) -> dict[str, Any]:
    for f in dirs.logs.glob("*.log"):
        f.unlink()
    probes: list[subprocess.Popen[bytes]] = []
    with StageSet(dirs) as stages:
        watch = HeartbeatWatch.connect(dirs.bus, ["collector", "sessionizer", "analyzer"])
        t0 = time.monotonic()
        for name in ("collector", "sessionizer", "analyzer", "sinks-jsonl"):
            stages.start(name, ["--config", str(dirs.config), "--bus-dir", str(dirs.bus), "--pid-file",
                                str(dirs.pid_file)] if name == "collector" else None)
        try:
            ready = None
            next_probe = t0
            while time.monotonic() - t0 < spec.timeout_s:
                now = time.monotonic()
                if now >= next_probe:
                    probes.append(subprocess.Popen([str(tracked), "openat", "1", str(PROBE_LIFETIME_MS)],
                                                   stdout=subprocess.DEVNULL))
                    next_probe += PROBE_INTERVAL_S
                watch.pump(0.02)
                if _probe_pids_on_disk(dirs.log("events"), {p.pid for p in probes}):
                    ready = time.monotonic() - t0
                    break
                stages.check_alive()
            heartbeats = {k: round(v - t0, 3) for k, v in watch.first_seen.items()}
        finally:
            watch.close()
            for p in probes:
                p.wait(10)
    return {"ready_s": None if ready is None else round(ready, 3), "first_heartbeat_s": heartbeats,
            "probes_launched": len(probes)}


def run(spec: StartupSpec, workdir: Path) -> dict[str, Any]:
    if os.geteuid() != 0:
        raise PermissionError("the start-up benchmark starts the collector: run it as root")
    dirs = BenchDirs.create(workdir / "startup")
    _, tracked = build_workload(dirs.root)
    runs = [once(spec, dirs, tracked) for _ in range(spec.repeats)]
    ready = sorted(r["ready_s"] for r in runs if r["ready_s"] is not None)
    return {"startup_s": ready[len(ready) // 2] if len(ready) == len(runs) else None,
            "detail": {"runs": runs}}
