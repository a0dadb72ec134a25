"""Overhead on the monitored machine: the real collector attached vs not, alternated, in one run.

    python -m bench overhead            # root; part of `make bench`

Workloads (bench/workloads/syscalls.c, built with gcc into a private directory): an openat flood,
the same flood with a relative path (``openatrel``, run from a cwd RELATIVE_DEPTH directories
below the work directory: every tracked relative open makes the kernel walk the cwd up to the
root), a fork+exec loop of /bin/true, a loopback TCP connect loop, a getppid loop (a syscall
no probe watches), and the detection signals' hot syscalls: a chmod flood, a link+unlink loop
and a UDP sendto flood of DNS queries (absolute paths; the sends to a loopback socket). Each runs (a) untracked, under its own name, and (b) tracked: the same binary copied to
the bench profile's root name ``casabenchroot`` (bench/stages.py), which the collector recognises
at exec and tracks in-kernel, so every open/connect/fork/exec of the loop becomes an event.

Three attachments alternate within each round (their order rotates per round, so drift on a shared
machine hits all of them): ``none``; ``noop`` (bench/noop_probes.bpf.c: the collector's
tracepoints with do-nothing handlers, the floor of any tracepoint monitor); ``collector`` (the real
collector, publishing to a draining subscriber). Before every measurement the collector and its
subscriber must have been idle for IDLE_QUIET_S, so the backlog of a tracked flood (the kernel
ring buffer fills and drops; user space drains what it holds) is not charged to the next run.
Reported: median loop time per cell, and the ratios noop/none (floor) and collector/none
(slowdown).

**Other monitors.** On a shared machine another process may attach syscall tracepoints of its own
(another collector under test) at any time, and then every process, in every mode, pays the
tracing slow path: a ``none`` cell stops being none. Each measurement notes whether tracepoint
programs of a process other than this attachment's were attached before or after it
(``bpftool perf show``); a ratio is computed from the clean measurements of both cells when each
has at least MIN_CLEAN, else from all of them, and the detail says which (``clean_samples``). The result keys (``*_slowdown``, ``*_floor``) are ratios of the workload's CPU time
(user + system of the loop, children included): that includes every probe's cost inside the
workload's syscalls, and stays meaningful on a shared machine where other tenants make wall
time swing by +-30% between runs. Wall-time ratios (``*_wall_slowdown``, ``*_wall_floor``:
what a user waits, including waiting for a CPU the collector's user space holds on 2 cores) are
reported beside them. Only the loop is timed.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.recording import ROOT_COMM
from bench.stages import BenchDirs, HeartbeatWatch, StageSet, cpu_ticks

__all__ = ["OverheadSpec", "run", "build_workload"]

WORKLOADS: dict[str, int] = {"openat": 300_000, "openatrel": 300_000, "forkexec": 1_000, "connect": 15_000,
                             "getppid": 2_000_000, "chmod": 300_000, "unlink": 150_000, "sendto": 300_000}
CWD_WORKLOADS = ("chmod", "unlink")   # they make their file in the cwd: the work directory
RELATIVE_DEPTH = 6            # openatrel's cwd: this many directories below the work directory
MODES = ("none", "noop", "collector")
TRACKED_DELAY_MS = 300        # lets the collector confirm the root before the loop starts
IDLE_QUIET_S = 0.3            # the collector counts as idle after this long without CPU time
IDLE_TIMEOUT_S = 30.0
ATTACH_TIMEOUT_S = 30.0
MIN_CLEAN = 3                 # clean measurements per cell needed to use only the clean ones
SOURCE = Path(__file__).resolve().parent / "workloads" / "syscalls.c"


@dataclass(frozen=True, slots=True)
class OverheadSpec:
    rounds: int = 7
    scale: float = 1.0            # multiplies the iteration counts (tiny runs use 0.01)
    modes: tuple[str, ...] = MODES


def build_workload(directory: Path) -> tuple[Path, Path]:
    """Compile the workloads; return (untracked binary, tracked copy named like the bench root)."""
    if shutil.which("gcc") is None:
        raise RuntimeError("gcc is missing: apt-get install -y gcc (needed for bench/workloads)")
    plain = directory / "casa-bench-wl"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(plain), str(SOURCE)], check=True)
    tracked = directory / ROOT_COMM
    shutil.copy2(plain, tracked)
    for p in (directory, plain, tracked):
        p.chmod(0o755)
    return plain, tracked


def relative_cwd(directory: Path) -> Path:
    """openatrel's cwd, with the file it opens ("target")."""
    cwd = directory.joinpath(*(f"rel{i}" for i in range(RELATIVE_DEPTH)))
    cwd.mkdir(parents=True, exist_ok=True)
    (cwd / "target").write_text("x\n")
    for p in [cwd, *cwd.parents]:
        if p == directory:
            break
        p.chmod(0o755)
    return cwd


def run_workload(binary: Path, mode: str, iterations: int, delay_ms: int) -> tuple[int, int]:
    """Run one loop; return its (wall, cpu) time in ns, as printed by the workload."""
    cwd = relative_cwd(binary.parent) if mode == "openatrel" else binary.parent if mode in CWD_WORKLOADS else None
    out = subprocess.run([str(binary), mode, str(iterations), str(delay_ms)], capture_output=True,
                         text=True, check=False, timeout=300, cwd=cwd)
    if out.returncode != 0:
        raise RuntimeError(f"workload {binary.name} {mode} failed ({out.returncode}): {out.stderr.strip()}")
    fields = out.stdout.split()
    return int(fields[2]), int(fields[3])


def foreign_tracepoints(own: set[int]) -> int:
    """Tracepoint programs attached by processes not in ``own`` (another monitor on the machine);
    -1 when bpftool cannot tell."""
    try:
        out = subprocess.run(["bpftool", "perf", "show", "--json"], capture_output=True, text=True,
                             timeout=10, check=False)
        links = json.loads(out.stdout or "[]")
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return -1
    return sum(1 for link in links if link.get("fd_type") == "tracepoint" and link.get("pid") not in own)


def wait_idle(pids: list[int], quiet_s: float = IDLE_QUIET_S, timeout_s: float = IDLE_TIMEOUT_S) -> float:
    """Wait until none of ``pids`` used CPU for ``quiet_s``; return the time waited.

    After a tracked flood the collector (and its subscriber) may still be draining a full ring
    buffer; measuring the next workload meanwhile would charge that backlog to it.
    """
    start = time.monotonic()
    last, since = [cpu_ticks(p) for p in pids], time.monotonic()
    while time.monotonic() - start < timeout_s:
        time.sleep(0.05)
        now = [cpu_ticks(p) for p in pids]
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
    return time.monotonic() - start


class Attachment:
    """Context manager putting the machine in one of MODES."""

    def __init__(self, mode: str, dirs: BenchDirs) -> None:
        self.mode, self.dirs = mode, dirs
        self.stages = StageSet(dirs)
        self.noop: subprocess.Popen[str] | None = None
        self.drain: subprocess.Popen[str] | None = None
        self.report: dict[str, Any] = {}

    def __enter__(self) -> Attachment:
        try:
            self._attach()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _attach(self) -> None:
        if self.mode == "noop":
            self.noop = subprocess.Popen([sys.executable, "-m", "bench.noop"], stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True, env=self.dirs.env())
            if self.noop.stdout is None or self.noop.stdout.readline().strip() != "attached":
                raise RuntimeError("bench.noop did not attach its probes (root and bcc needed)")
        elif self.mode == "collector":
            self._start_collector()

    def _start_collector(self) -> None:
        self.drain = subprocess.Popen([sys.executable, "-m", "bench.drain", "--bus-dir", str(self.dirs.bus),
                                       "--stream", "collector"], stdout=subprocess.PIPE, text=True,
                                      env=self.dirs.env())
        if self.drain.stdout is None or self.drain.stdout.readline().strip() != "subscribed":
            raise RuntimeError("bench.drain did not start")
        self.stages.start("collector", ["--config", str(self.dirs.config), "--bus-dir", str(self.dirs.bus),
                                        "--pid-file", str(self.dirs.pid_file)])
        self.stages.wait_ready(["collector"], ATTACH_TIMEOUT_S)

    def own_pids(self) -> set[int]:
        """The processes whose tracepoint programs are this attachment's own."""
        pids = {p.pid for p in self.stages.procs.values()}
        return pids | ({self.noop.pid} if self.noop is not None else set())

    def settle(self) -> None:
        """Before a measurement: let the collector and its subscriber finish any backlog."""
        if self.mode == "collector":
            pids = [p.pid for p in self.stages.procs.values()] + ([self.drain.pid] if self.drain else [])
            self.report["settle_s"] = round(self.report.get("settle_s", 0.0) + wait_idle(pids), 2)

    def collector_counters(self) -> dict[str, Any]:
        watch = HeartbeatWatch.connect(self.dirs.bus, ["collector"])
        try:
            deadline = time.monotonic() + 2.5
            while "collector" not in watch.latest and time.monotonic() < deadline:
                watch.pump(0.1)
            return watch.latest.get("collector", {})
        finally:
            watch.close()

    def __exit__(self, *exc: object) -> None:
        if self.noop is not None:
            self.noop.terminate()
            self.noop.wait(10)
        if self.mode == "collector":
            if "collector" in self.stages.procs:
                self.report["collector"] = self.collector_counters()
            self.stages.stop_all()
            if self.drain is not None:
                self.drain.terminate()
                out, _ = self.drain.communicate(timeout=10)
                self.report["drain"] = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}


# (mode, workload, tracked) -> [(wall ns, cpu ns, clean)]: clean = no other monitor attached
Cells = dict[tuple[str, str, bool], list[tuple[int, int, bool]]]


def _measure(att: Attachment, binary: Path, wl: str, n: int, delay_ms: int) -> tuple[int, int, bool]:
    att.settle()
    own = att.own_pids()
    before = foreign_tracepoints(own)
    wall, cpu = run_workload(binary, wl, n, delay_ms)
    return wall, cpu, before == 0 and foreign_tracepoints(own) == 0


def _cells(spec: OverheadSpec, dirs: BenchDirs, plain: Path, tracked: Path) -> tuple[Cells, list[dict[str, Any]]]:
    times: Cells = {}
    reports: list[dict[str, Any]] = []
    for r in range(spec.rounds):
        order = spec.modes[r % len(spec.modes):] + spec.modes[:r % len(spec.modes)]
        for mode in order:
            with Attachment(mode, dirs) as att:
                for wl, n in WORKLOADS.items():
                    n = max(1, int(n * spec.scale))
                    times.setdefault((mode, wl, False), []).append(_measure(att, plain, wl, n, 0))
                    times.setdefault((mode, wl, True), []).append(
                        _measure(att, tracked, wl, n, TRACKED_DELAY_MS))
            if att.report:
                reports.append({"round": r, **att.report})
    return times, reports


def _samples(times: Cells, mode: str, wl: str, tracked: bool) -> tuple[list[tuple[int, int, bool]], list[tuple[int, int, bool]]]:
    """(none, mode) measurements: the clean ones when both cells have MIN_CLEAN, else all."""
    base, other = times.get(("none", wl, tracked), []), times.get((mode, wl, tracked), [])
    clean_base, clean_other = [t for t in base if t[2]], [t for t in other if t[2]]
    if len(clean_base) >= MIN_CLEAN and len(clean_other) >= MIN_CLEAN:
        return clean_base, clean_other
    return base, other


def _ratio(times: Cells, mode: str, wl: str, tracked: bool, which: int = 0) -> float | None:
    """median(mode) / median(none) of wall (which=0) or cpu (which=1) time."""
    base, other = _samples(times, mode, wl, tracked)
    if not base or not other:
        return None
    return round(statistics.median(t[which] for t in other) / statistics.median(t[which] for t in base), 3)


def run(spec: OverheadSpec, workdir: Path) -> dict[str, Any]:
    """Measure; return the result keys plus a ``detail`` map (medians, floors, collector counters)."""
    if os.geteuid() != 0:
        raise PermissionError("the overhead benchmark attaches eBPF probes: run it as root")
    dirs = BenchDirs.create(workdir / "overhead")
    plain, tracked = build_workload(dirs.root)
    times, reports = _cells(spec, dirs, plain, tracked)
    result: dict[str, Any] = {}
    for wl in WORKLOADS:
        for tr in (False, True):
            tag = f"{'tracked' if tr else 'untracked'}_{wl}"
            result[f"{tag}_slowdown"] = _ratio(times, "collector", wl, tr, 1)
            result[f"{tag}_floor"] = _ratio(times, "noop", wl, tr, 1)
            result[f"{tag}_wall_slowdown"] = _ratio(times, "collector", wl, tr, 0)
            result[f"{tag}_wall_floor"] = _ratio(times, "noop", wl, tr, 0)
    medians = {f"{m}/{wl}/{'tracked' if tr else 'untracked'}": [statistics.median(t[0] for t in v),
                                                                 statistics.median(t[1] for t in v)]
               for (m, wl, tr), v in sorted(times.items())}
    clean = {f"{m}/{wl}/{'tracked' if tr else 'untracked'}": sum(t[2] for t in v)
             for (m, wl, tr), v in sorted(times.items())}
    iterations = {wl: max(1, int(n * spec.scale)) for wl, n in WORKLOADS.items()}
    result["detail"] = {"rounds": spec.rounds, "iterations": iterations,
                        "median_loop_ns_wall_cpu": medians, "clean_samples": clean,
                        "min_clean": MIN_CLEAN, "collector_runs": reports}
    return result
