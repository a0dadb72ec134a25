"""Runtime overhead of CASA on real OpenClaw turns: the original's six workloads, with and without CASA.

    python -m evaluation.overhead [--runs 3] [--out evaluation/results/latest]

The workloads (evaluation/scenarios/overhead/: L01 weather fetch, L02 CSV processing, M01
multi-step pipeline, M02 write-and-run script, H01 burst of subprocesses, H02 repeated HEAD
requests) run as OpenClaw turns through one gateway, as casa-agent. Each run does the six
workloads monitored and unmonitored, alternating which comes first, so drift (page cache,
OpenClaw's own warm-up) does not favour either side; CASA is started and stopped for it.

Measured:
  * task time: wall time of each ``openclaw agent`` turn; the ratio monitored / unmonitored of
    the medians per workload;
  * CPU and RSS of each CASA stage while the monitored turns run (utime+stime and VmRSS from
    /proc, sampled every SAMPLE_INTERVAL_S);
  * event -> log latency: a tail of events.log stamps each new line with the wall clock and
    subtracts the line's event ``timestamp`` (the kernel time of the event): p50 and p95 per
    workload (nearest rank), as the original's "log observation" latency.

Writes overhead.json and overhead.md to --out. Caveat: with two cores, the fake model, the
gateway, the CLI and five CASA processes share the machine; the figures include that contention.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.latency import percentile, rfc3339_ns
from bench.stages import CLK_TCK, cpu_ticks
from bench.tail import Appended
from evaluation.agent import reset_scratch
from evaluation.cases import run_turn
from evaluation.command import add_results_dir, command_parser, root_command
from evaluation.fakellm import Scenario, load_scenarios
from evaluation.runner import EvalSession
from evaluation.score import machine_description
from evaluation.stack import CasaStack
from evaluation.toolchain import SCENARIO_DIR

__all__ = ["StageSampler", "LogTail", "main"]

SAMPLE_INTERVAL_S = 0.5
TAIL_POLL_S = 0.005
OVERHEAD_DIR = SCENARIO_DIR / "overhead"

log = logging.getLogger("casa.eval.overhead")


# --- samplers ------------------------------------------------------------------------------------

def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass(slots=True)
class StageSampler:
    """Samples CPU time and RSS of the CASA stage processes in a background thread."""

    pids: dict[str, int]
    cpu_pct: dict[str, list[float]] = field(default_factory=dict)
    rss_kb: dict[str, list[int]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="stage-sampler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        last = {n: (cpu_ticks(p), time.monotonic()) for n, p in self.pids.items()}
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            for name, pid in self.pids.items():
                ticks, now = cpu_ticks(pid), time.monotonic()
                prev_ticks, prev_t = last[name]
                if ticks is not None and prev_ticks is not None and now > prev_t:
                    pct = 100.0 * (ticks - prev_ticks) / CLK_TCK / (now - prev_t)
                    self.cpu_pct.setdefault(name, []).append(round(pct, 2))
                self.rss_kb.setdefault(name, []).append(_rss_kb(pid))
                last[name] = (ticks, now)

    def stop(self) -> dict[str, dict[str, float]]:
        self._stop.set()
        if self._thread:
            self._thread.join(2.0)
        return {n: {"cpu_avg_pct": round(statistics.fmean(self.cpu_pct.get(n) or [0.0]), 2),
                    "cpu_peak_pct": max(self.cpu_pct.get(n) or [0.0]),
                    "rss_avg_kb": round(statistics.fmean(self.rss_kb.get(n) or [0])),
                    "rss_peak_kb": max(self.rss_kb.get(n) or [0])} for n in self.pids}


@dataclass(slots=True)
class LogTail:
    """Follows events.log; each new line's latency = wall clock at first sight - its event time."""

    path: Path
    latencies_ms: list[float] = field(default_factory=list)
    bad_lines: int = 0
    _appended: Appended | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._appended = Appended(self.path)
        self._appended.skip_existing()
        self._thread = threading.Thread(target=self._loop, name="events-tail", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(TAIL_POLL_S):
            self.poll()

    def poll(self) -> None:
        if self._appended is None:
            self._appended = Appended(self.path)
        lines = self._appended.lines()
        now = time.time_ns()
        for line in lines:
            try:
                ts = rfc3339_ns(json.loads(line)["timestamp"])
            except (ValueError, KeyError, TypeError):
                self.bad_lines += 1
                continue
            self.latencies_ms.append((now - ts) / 1e6)

    def take(self) -> list[float]:
        """The latencies seen so far, and start a new batch."""
        out, self.latencies_ms = self.latencies_ms, []
        return out

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(2.0)


# --- the procedure -------------------------------------------------------------------------------

@dataclass(slots=True)
class Sample:
    workload: str
    run: int
    monitored: bool
    task_s: float
    rc: int
    latencies_ms: list[float] = field(default_factory=list)
    stages: dict[str, dict[str, float]] = field(default_factory=dict)


def _turn(ev: EvalSession, w: Scenario, out: Path) -> tuple[float, int]:
    reset_scratch()
    out.mkdir(parents=True, exist_ok=True)
    t = time.monotonic()
    rc, _, _ = run_turn(ev.toolchain, ev.homes["gateway"], "gateway", w.prompt, out)
    return time.monotonic() - t, rc


def _monitored_pass(ev: EvalSession, workloads: list[Scenario], run: int, out: Path) -> list[Sample]:
    scratch = Path(tempfile.mkdtemp(prefix="casa-overhead-"))
    stack = CasaStack(scratch)
    stack.start()
    tail = LogTail(stack.log_dir / "events.log")
    tail.start()
    samples = []
    try:
        for w in workloads:
            sampler = StageSampler(stack.pids())
            sampler.start()
            task_s, rc = _turn(ev, w, out / f"{w.id}-run{run}-monitored")
            time.sleep(1.0)          # the tail of the turn's events reaches the log
            stages = sampler.stop()
            samples.append(Sample(w.id, run, True, task_s, rc, tail.take(), stages))
            stack.check_alive()
    finally:
        tail.stop()
        stack.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return samples


def _baseline_pass(ev: EvalSession, workloads: list[Scenario], run: int, out: Path) -> list[Sample]:
    samples = []
    for w in workloads:
        task_s, rc = _turn(ev, w, out / f"{w.id}-run{run}-baseline")
        samples.append(Sample(w.id, run, False, task_s, rc))
    return samples


def summarize(samples: list[Sample], workloads: list[Scenario]) -> dict[str, Any]:
    rows = []
    for w in workloads:
        mon = [s for s in samples if s.workload == w.id and s.monitored]
        base = [s for s in samples if s.workload == w.id and not s.monitored]
        lat = [x for s in mon for x in s.latencies_ms]
        mon_t = statistics.median([s.task_s for s in mon]) if mon else None
        base_t = statistics.median([s.task_s for s in base]) if base else None
        stages: dict[str, dict[str, float]] = {}
        for s in mon:
            for name, st in s.stages.items():
                agg = stages.setdefault(name, {"cpu_avg_pct": 0.0, "cpu_peak_pct": 0.0, "rss_peak_kb": 0})
                agg["cpu_avg_pct"] = round(agg["cpu_avg_pct"] + st["cpu_avg_pct"] / len(mon), 2)
                agg["cpu_peak_pct"] = max(agg["cpu_peak_pct"], st["cpu_peak_pct"])
                agg["rss_peak_kb"] = max(agg["rss_peak_kb"], st["rss_peak_kb"])
        rows.append({"id": w.id, "name": w.name, "class": {"L": "light", "M": "medium", "H": "heavy"}[w.id[0]],
                     "runs": len(mon), "task_s_monitored": mon_t, "task_s_baseline": base_t,
                     "task_time_ratio": round(mon_t / base_t, 3) if mon_t and base_t else None,
                     "failed_turns": sum(1 for s in mon + base if s.rc != 0),
                     "events_logged": len(lat),
                     "latency_ms_p50": _r(percentile(lat, 50)), "latency_ms_p95": _r(percentile(lat, 95)),
                     "stages": stages})
    return {"workloads": rows, "samples": [asdict(s) | {"latencies_ms": len(s.latencies_ms)} for s in samples]}


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


def render_markdown(result: dict[str, Any], machine: str) -> str:
    lines = [f"Machine: {machine}", "",
             "| id | workload | runs | task s (monitored / baseline) | ratio | events logged | "
             "event→log p50 / p95 ms | CPU avg % (collector, sessionizer, analyzer, sink) | "
             "peak RSS MB (same order) |", "|---|---|---|---|---|---|---|---|---|"]
    order = ("collector", "sessionizer", "analyzer", "sinks-jsonl")
    for r in result["workloads"]:
        st = r["stages"]
        cpu = " / ".join(f"{st[n]['cpu_avg_pct']:.1f}" if n in st else "—" for n in order)
        rss = " / ".join(f"{st[n]['rss_peak_kb'] / 1024:.0f}" if n in st else "—" for n in order)
        lines.append(f"| {r['id']} | {r['name']} | {r['runs']} | {_f(r['task_s_monitored'])} / "
                     f"{_f(r['task_s_baseline'])} | {_f(r['task_time_ratio'], 3)} | {r['events_logged']} | "
                     f"{_f(r['latency_ms_p50'], 1)} / {_f(r['latency_ms_p95'], 1)} | {cpu} | {rss} |")
    return "\n".join(lines) + "\n"


def _f(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = command_parser("evaluation.overhead", __doc__, ("--runs 3",))
    p.add_argument("--runs", type=int, default=3, help="monitored/unmonitored pass pairs, alternated (default 3)")
    add_results_dir(p, "overhead.json, overhead.md and the turns' output")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not root_command("evaluation/overhead", "it starts the collector"):
        return 2
    workloads = load_scenarios(OVERHEAD_DIR)
    samples: list[Sample] = []
    turns = args.out / "overhead-turns"
    with EvalSession(args.out, casa="none", modes=("gateway",)) as ev:
        for w in workloads:                      # warm-up: OpenClaw's first turns are slower
            _turn(ev, w, turns / f"{w.id}-warmup")
        for run in range(args.runs):
            passes = (_monitored_pass, _baseline_pass) if run % 2 == 0 else (_baseline_pass, _monitored_pass)
            for one_pass in passes:
                samples += one_pass(ev, workloads, run, turns)
                log.info("pass done | run=%d pass=%s", run, one_pass.__name__)
    result = summarize(samples, workloads)
    result["machine"] = machine_description()
    result["runs"] = args.runs
    (args.out / "overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    table = render_markdown(result, result["machine"])
    (args.out / "overhead.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
