"""CASA benchmarks: throughput, latency, overhead, memory and start-up, measured in one run.

usage: python -m bench [--only NAME ...] [--tiny] [--out FILE] [--workdir DIR]

Writes the result keys (numbers; null when a benchmark could not run) to bench/results/latest.json
and prints a table with the targets of docs/performance.md. With --only, the other benchmarks'
results already in the file are kept ("runs" says which commit and time each one comes from). Each benchmark runs both sides in the
same run (CASA vs the bus ceiling, collector vs no collector vs do-nothing probes) and reports
ratios, because the machines are shared and absolute times drift between runs.

Needs root for the overhead and start-up benchmarks (eBPF); the others start the unprivileged
stages as user casa when run as root. A benchmark that fails is reported under "errors" and the
others still run.

examples:
  sudo make bench                                   # everything (about 4 minutes)
  sudo .venv/bin/python -m bench --only throughput latency
  .venv/bin/python -m bench --tiny --out /tmp/b.json  # seconds: checks that the harness works
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import latency, memory, overhead, response, startup, throughput
from bench.recording import RecordingSpec
from bench.stages import CHECKOUT

RESULTS = CHECKOUT / "bench" / "results" / "latest.json"
BENCHMARKS = ("throughput", "latency", "overhead", "memory", "startup", "response")

# key -> (comparison, target) ; None: reported, no target
TARGETS: dict[str, tuple[str, float] | None] = {
    "e2e_events_per_s": (">=", 50_000),
    "e2e_lost_events": ("==", 0),
    "e2e_paced_events_per_s": None,
    "e2e_paced_lag_s": None,
    "e2e_paced_lost_events": ("==", 0),
    "alert_p50_ms_at_5k": None,
    "alert_p99_ms_at_5k": ("<=", 10.0),
    "alert_p99_ms_at_20k": None,
    "untracked_openat_slowdown": ("<=", 1.05),
    "untracked_forkexec_slowdown": ("<=", 1.05),
    "tracked_openat_slowdown": ("<=", 1.4),
    "tracked_forkexec_slowdown": ("<=", 1.25),
    "tracked_openatrel_slowdown": None,
    "tracked_connect_slowdown": None,
    "untracked_chmod_slowdown": None,
    "tracked_chmod_slowdown": None,
    "untracked_unlink_slowdown": None,
    "tracked_unlink_slowdown": None,
    "untracked_sendto_slowdown": None,
    "tracked_sendto_slowdown": None,
    "rss_mb_per_1000_sessions": None,
    "history_mb_per_1000_sessions_at_cap": None,
    "startup_s": ("<=", 3.0),
    "response_p50_ms": None,
    "response_p99_ms": ("<=", 20.0),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0],
                                epilog=__doc__.split("examples:")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS), metavar="NAME",
                   help=f"run only these ({', '.join(BENCHMARKS)})")
    p.add_argument("--tiny", action="store_true", help="tiny configurations (smoke test; numbers are meaningless)")
    p.add_argument("--out", type=Path, help=f"result file (default {RESULTS.relative_to(CHECKOUT)}; "
                                            "--tiny without --out writes into the work directory)")
    p.add_argument("--workdir", type=Path, help="keep stage logs and recordings here (default: a temp dir)")
    return p.parse_args(argv)


def plans(tiny: bool) -> dict[str, Callable[[Path], dict[str, Any]]]:
    if tiny:
        rec = RecordingSpec(sessions=20, concurrent=5, children=2, opens=3, connects=1)
        return {
            "throughput": lambda w: throughput.run(throughput.ThroughputSpec(recording=rec, quiet_s=2.0,
                                                                             paced_rate=2_000.0), w),
            "latency": lambda w: latency.run(latency.LatencySpec(rates=(500,), duration_s=1.5, warmup_s=0.2,
                                                                       real_probes=2), w),
            "overhead": lambda w: overhead.run(overhead.OverheadSpec(rounds=1, scale=0.005), w),
            "memory": lambda w: memory.run(memory.MemorySpec(steps=(1, 5), churn_cycles=1, churn_sessions=5,
                                                             history_trees=2, history_cap=64), w),
            "startup": lambda w: startup.run(startup.StartupSpec(repeats=1), w),
            "response": lambda w: response.run(latency.LatencySpec(rates=(500,), duration_s=1.5,
                                                                   warmup_s=0.2, real_probes=0), w),
        }
    return {
        "throughput": lambda w: throughput.run(throughput.ThroughputSpec(), w),
        "latency": lambda w: latency.run(latency.LatencySpec(), w),
        "overhead": lambda w: overhead.run(overhead.OverheadSpec(), w),
        "memory": lambda w: memory.run(memory.MemorySpec(), w),
        "startup": lambda w: startup.run(startup.StartupSpec(), w),
        "response": lambda w: response.run(latency.LatencySpec(rates=(5_000,)), w),
    }


def verdict(key: str, value: Any) -> str:
    target = TARGETS.get(key)
    if target is None:
        return "-"
    if value is None:
        return "not measured"
    op, limit = target
    ok = {"<=": value <= limit, ">=": value >= limit, "==": value == limit}[op]
    return "met" if ok else "NOT MET"


def table(results: dict[str, Any]) -> str:
    rows = [("key", "value", "target", "verdict")]
    for key in TARGETS:
        t = TARGETS[key]
        value = results.get(key)
        rows.append((key, "null" if value is None else f"{value:g}" if isinstance(value, float) else str(value),
                     f"{t[0]} {t[1]:g}" if t else "", verdict(key, value)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def meta() -> dict[str, Any]:
    commit = subprocess.run(["git", "-C", str(CHECKOUT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=False).stdout.strip()
    return {"generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "git_commit": commit,
            "kernel": platform.release(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "euid": os.geteuid()}


def previous(out: Path, rerun: list[str]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """With --only, keep the other benchmarks' keys, details and run metadata from ``out``."""
    try:
        old = json.loads(out.read_text())
    except (OSError, ValueError):
        return {k: None for k in TARGETS}, {}, {}
    details = {k: v for k, v in old.get("detail", {}).items() if k not in rerun}
    runs = {k: v for k, v in old.get("runs", {}).items() if k not in rerun}
    for name in details:
        runs.setdefault(name, old.get("meta", {}))
    skip = {"verdicts", "tiny", "meta", "runs", "errors", "detail"}
    results = {k: v for k, v in old.items() if k not in skip}
    return results, details, runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="casa-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)          # stages run as user casa and must reach their directories
    out = args.out or (workdir / "latest.json" if args.tiny else RESULTS)
    results: dict[str, Any] = {k: None for k in TARGETS}
    details: dict[str, Any] = {}
    errors: dict[str, str] = {}
    runs: dict[str, Any] = {}
    if set(args.only) != set(BENCHMARKS) and out.exists():
        results, details, runs = previous(out, args.only)
    runners = plans(args.tiny)
    for name in args.only:
        print(f"running {name} benchmark | workdir={workdir}", file=sys.stderr, flush=True)
        t = time.monotonic()
        try:
            got = runners[name](workdir)
        except Exception as exc:           # one broken benchmark must not hide the others
            errors[name] = f"{type(exc).__name__}: {exc}"
            print(f"{name} benchmark failed | error={errors[name]}", file=sys.stderr)
            traceback.print_exc()
            continue
        details[name] = got.pop("detail", {})
        details[name]["wall_s"] = round(time.monotonic() - t, 1)
        results.update(got)
        runs[name] = meta()
    doc = {**results, "verdicts": {k: verdict(k, results.get(k)) for k in TARGETS if TARGETS[k]},
           "tiny": args.tiny, "meta": meta(), "runs": runs, "errors": errors, "detail": details}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    tmp.replace(out)
    print(table(results))
    print(f"results: {out}" + (f" | errors={sorted(errors)}" if errors else ""))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
