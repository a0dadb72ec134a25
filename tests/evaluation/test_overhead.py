"""Overhead measurement pieces: the sinks' timestamps, the events.log tail, the CPU sampler."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.latency import rfc3339_ns
from evaluation.overhead import LogTail, StageSampler
from sinks.records import rfc3339nano


@pytest.mark.parametrize("ts_ns", [1_795_672_858_492_668_054, 1_795_672_858_000_000_000, 1_795_672_858_100_000_000])
def test_the_tail_reads_the_sinks_timestamps_to_the_nanosecond(ts_ns: int):
    """The tail parses with bench.latency.rfc3339_ns (offsets and bad stamps: tests/bench)."""
    assert rfc3339_ns(rfc3339nano(ts_ns)) == ts_ns


def test_tail_measures_only_lines_appended_after_start_and_counts_bad_ones(tmp_path: Path):
    log = tmp_path / "events.log"
    log.write_text(json.dumps({"timestamp": rfc3339nano(time.time_ns() - 10**10)}) + "\n")
    tail = LogTail(log)
    tail.start()
    try:
        with open(log, "a") as f:
            f.write(json.dumps({"timestamp": rfc3339nano(time.time_ns() - 50_000_000)}) + "\n")
            f.write("not json\n")
            f.write('{"timestamp": "2026')          # a partial line: not counted until complete
            f.flush()
            deadline = time.monotonic() + 2
            while not tail.latencies_ms and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        tail.stop()
    lat = tail.take()
    assert len(lat) == 1 and 50 <= lat[0] < 1050
    assert tail.bad_lines == 1


def test_sampler_sees_a_busy_process_use_cpu():
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<3: pass"])
    try:
        sampler = StageSampler({"busy": busy.pid, "self": os.getpid()})
        sampler.start()
        time.sleep(1.6)
        stats = sampler.stop()
    finally:
        busy.kill()
        busy.wait()
    assert stats["busy"]["cpu_avg_pct"] > 10      # a spinning process, on a shared 2-core machine
    assert stats["busy"]["rss_peak_kb"] > 1000
