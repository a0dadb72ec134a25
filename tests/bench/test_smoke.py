"""Smoke tests of the benchmarks: each runs in a tiny configuration and must produce its keys.

These are not benchmarks: no timing is asserted, only that the harness still works against the
real stages (so `make bench` does not rot between runs) and that its pieces are correct.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import pytest
import zmq

import bus
from bench import __main__ as bench_main
from bench.feeder import Feeder, prepack
from bench.latency import percentile, rfc3339_ns
from bench.overhead import wait_idle
from bench.stages import cpu_ticks
from bench.recording import (RECORD_KINDS, ROOT_EXE, RecordingSpec, alert_session, alert_trigger,
                             expected_records, generate)
from bench.throughput import LineCounter, loss_counters
from bus.envelope import Envelope
from bus.events import SCHEMA
from bus.topics import COLLECTOR_EVENT

CHECKOUT = Path(__file__).resolve().parents[2]
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="attaches eBPF probes / starts the collector: needs root")

KEYS = {
    "throughput": ("e2e_events_per_s", "e2e_lost_events", "e2e_paced_events_per_s", "e2e_paced_lag_s",
                   "e2e_paced_lost_events"),
    "latency": ("alert_p50_ms_at_5k", "alert_p99_ms_at_5k"),
    "memory": ("rss_mb_per_1000_sessions", "history_mb_per_1000_sessions_at_cap"),
    "overhead": ("untracked_openat_slowdown", "untracked_forkexec_slowdown", "tracked_openat_slowdown",
                 "tracked_forkexec_slowdown", "tracked_connect_slowdown"),
    "startup": ("startup_s",),
}


def run_tiny(name: str, tmp_path: Path) -> dict:
    out = tmp_path / "result.json"
    # the stages run as user casa: pytest's tmp_path (under a 0700 directory) is out of reach
    work = Path(tempfile.mkdtemp(prefix="casa-bench-smoke-"))
    try:
        proc = subprocess.run([sys.executable, "-m", "bench", "--tiny", "--only", name, "--out", str(out),
                               "--workdir", str(work)], cwd=CHECKOUT, capture_output=True,
                              text=True, timeout=240, check=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["errors"] == {}
    assert doc["tiny"] is True
    assert "key" in proc.stdout and "verdict" in proc.stdout       # the printed table
    return doc


def test_recording_is_deterministic_and_counts_its_records() -> None:
    spec = RecordingSpec(sessions=30, concurrent=7, children=3, opens=4, connects=2)
    a, b = generate(spec), generate(spec)
    assert a == b
    per_session = 2 + 3 * (2 + 4 + 2 + 1) + 1          # root exec+root, children, root exit
    assert len(a) == 30 * per_session
    roots = sum(1 for e in a if e["kind"] == "exec" and e["path"] == ROOT_EXE)
    assert roots == 30
    assert expected_records(a) == sum(1 for e in a if e["kind"] in RECORD_KINDS) - roots
    for e in a:
        assert bus.validate_event(e) == [], e


def test_alert_probe_ends_with_the_exec_of_the_written_file() -> None:
    events = alert_session(3)
    write = [e for e in events if e["kind"] == "open"][0]
    assert write["flags"] & 0o100 and write["flags"] & 3 == 1
    trigger = alert_trigger(events)
    assert trigger["kind"] == "exec" and trigger["path"] == write["path"]
    assert events.index(trigger) > events.index(write)
    assert write["path"].startswith("/tmp/")
    assert events[-1]["kind"] == "exit" and events[-1]["tgid"] == events[0]["tgid"]   # it closes


def test_prepacked_replay_decodes_as_bus_envelopes(tmp_path: Path) -> None:
    feeder = Feeder.bind("collector", tmp_path)
    topics = bus.Subscriber.subscriptions(["collector."])
    sock = bus.connect_subscriber(zmq.Context.instance(), ["collector"], topics, tmp_path)
    sub = bus.Subscriber(sock, topics)
    try:
        feeder.wait_for_subscribers(1)
        events = generate(RecordingSpec(sessions=20, concurrent=4, children=1, opens=2, connects=1))
        feeder.send_packed(COLLECTOR_EVENT, prepack(events, 10_000))
        feeder.heartbeat()
        got: list[bus.Envelope] = []
        bodies: list[bytes] = []          # each message's body as it came off the socket
        deadline = time.monotonic() + 5
        while sum(len(e.events) for e in got) < len(events) and time.monotonic() < deadline:
            if sock.poll(100):
                frames = sock.recv_multipart()
                env = sub.handle_frames(frames)
                if env is not None:
                    got.append(env)
                    bodies.append(frames[1])
        received = [ev for env in got for ev in env.events]
        assert received == [msgpack.unpackb(msgpack.packb(e), raw=False) for e in events]
        seqs = [e.seq for e in got if e.topic == COLLECTOR_EVENT]
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) == -(-len(events) // 64)
        assert sub.counters.lost_messages == 0 and sub.counters.malformed == 0
        for env, body in zip(got, bodies):   # the replayer's frames are what bus.pack would send
            if env.topic == COLLECTOR_EVENT:
                assert env.schema == SCHEMA
                again = Envelope(env.topic, env.stream, env.epoch, env.seq, env.sent_ns, env.events)
                assert bus.pack(again)[1] == body
    finally:
        sock.close(0)
        feeder.close()


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_rfc3339_timestamps_of_the_logs_parse_to_ns() -> None:
    assert rfc3339_ns("2026-05-02T17:44:19.027509477-05:00") == 1777761859027509477
    assert rfc3339_ns("2026-05-02T22:44:19.027509477Z") == 1777761859027509477
    assert rfc3339_ns("2026-05-02T22:44:19Z") == 1777761859000000000
    with pytest.raises(ValueError):
        rfc3339_ns("yesterday")


def test_line_counter_counts_only_complete_lines(tmp_path: Path) -> None:
    f = tmp_path / "events.log"
    c = LineCounter.of(f)
    assert c.poll() == 0
    f.write_text('{"a": 1}\n{"b": 2}\n{"c"')
    assert c.poll() == 2
    with open(f, "a") as fh:
        fh.write(': 3}\n')
    assert c.poll() == 3


def test_loss_counters_pick_every_named_loss() -> None:
    counters = {"sessionizer": {"bus_lost_messages": 2, "accepted": 10, "undelivered_events": 0},
                "analyzer": {"lost_messages": 0, "nested": {"malformed": 1}}}
    assert loss_counters(counters) == {"sessionizer.bus_lost_messages": 2, "analyzer.nested.malformed": 1}


def test_verdicts_follow_the_targets() -> None:
    assert bench_main.verdict("e2e_events_per_s", 60_000) == "met"
    assert bench_main.verdict("e2e_events_per_s", 40_000) == "NOT MET"
    assert bench_main.verdict("e2e_lost_events", 0) == "met"
    assert bench_main.verdict("startup_s", None) == "not measured"
    assert bench_main.verdict("tracked_connect_slowdown", 3.0) == "-"


def test_wait_idle_returns_once_a_process_stops_using_cpu() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<0.6: pass\n"
                             "time.sleep(30)"])
    try:
        time.sleep(0.1)
        assert cpu_ticks(busy.pid) >= 0
        waited = wait_idle([busy.pid], quiet_s=0.3, timeout_s=10)
        assert 0.3 <= waited < 5                 # not before the busy loop ended, and not forever
    finally:
        busy.kill()
        busy.wait()
    assert cpu_ticks(busy.pid) is None           # gone


def test_only_keeps_the_other_benchmarks_results(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    out.write_text(json.dumps({"e2e_events_per_s": 1234, "startup_s": 9.0, "tiny": False,
                               "meta": {"git_commit": "abc"}, "runs": {}, "errors": {},
                               "detail": {"throughput": {"x": 1}, "startup": {"y": 2}}}))
    results, details, runs = bench_main.previous(out, ["startup"])
    assert results["e2e_events_per_s"] == 1234 and "detail" not in results
    assert details == {"throughput": {"x": 1}}
    assert runs == {"throughput": {"git_commit": "abc"}}


def test_profile_runs_both_cores() -> None:
    for stage in ("sessionizer", "analyzer"):
        proc = subprocess.run([sys.executable, "-m", "bench.profile", stage, "--sessions", "5", "--top", "3"],
                              cwd=CHECKOUT, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert f"{stage} core:" in proc.stdout and "/s without profiling" in proc.stdout


def test_throughput_benchmark_runs(tmp_path: Path) -> None:
    doc = run_tiny("throughput", tmp_path)
    for key in KEYS["throughput"]:
        assert doc[key] is not None, key
    detail = doc["detail"]["throughput"]
    assert detail["e2e"]["written_records"] == detail["e2e"]["expected_records"]
    paced = detail["e2e_paced"]
    assert paced["written_records"] == paced["expected_records"] and doc["e2e_paced_lost_events"] == 0
    # the paced replay never runs ahead of its rate: the last batch leaves no sooner than it is due
    assert paced["replay_s"] >= (paced["events"] - 64) / 2_000.0
    for stage in ("sessionizer", "analyzer", "sinks_jsonl"):
        assert detail[stage]["events_per_s"] > 0


def test_latency_benchmark_runs(tmp_path: Path) -> None:
    doc = run_tiny("latency", tmp_path)
    for key in KEYS["latency"]:
        assert doc[key] is not None, key
    low = doc["detail"]["latency"]["500"]
    assert low["alert_on_disk"]["n"] > 0 and low["decision_on_bus"]["n"] > 0
    if ROOT:                       # real processes through the real collector
        assert doc["detail"]["latency"]["real_collector"]["alerts"] > 0


@pytest.mark.slow          # make test-all; throughput and latency stay in make test
def test_memory_benchmark_runs(tmp_path: Path) -> None:
    doc = run_tiny("memory", tmp_path)
    assert doc["rss_mb_per_1000_sessions"] is not None
    assert doc["history_mb_per_1000_sessions_at_cap"] > 0
    assert doc["detail"]["memory"]["history_at_cap"]["history_index_cap"] == 64
    table = doc["detail"]["memory"]["rss_mb"]
    assert set(table["1 open"]) == {"sessionizer", "analyzer", "sinks-jsonl"}


@pytest.mark.root
@needs_root
@pytest.mark.slow          # make test-all; throughput and latency stay in make test
def test_overhead_benchmark_runs(tmp_path: Path) -> None:
    doc = run_tiny("overhead", tmp_path)
    for key in KEYS["overhead"]:
        assert doc[key] is not None, key
    runs = doc["detail"]["overhead"]["collector_runs"]
    assert runs and runs[0]["drain"]["events"] > 0       # the tracked workloads were seen


@pytest.mark.root
@needs_root
@pytest.mark.slow          # make test-all; throughput and latency stay in make test
def test_startup_benchmark_runs(tmp_path: Path) -> None:
    doc = run_tiny("startup", tmp_path)
    assert doc["startup_s"] is not None
