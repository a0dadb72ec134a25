"""End to end from the sessionizer's output: stand-in sessionizer -> real analyzer -> both sinks.

Feeds the golden M05 sequence (write /tmp/openclaw-eval/helper.sh, then run it: score 9, ALERT)
and checks that the records and the trace say what the analyzer decided.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import zmq

import bus
from tests.sinks.bus_harness import (CHECKOUT, CASA_USER, HeartbeatListener, as_casa, shared_dir,
                                     start_sink, stop, wait_for, wire)
from tests.sinks.otlp_receiver import OtlpReceiver

GOLDEN = CHECKOUT / "tests" / "fixtures" / "golden" / "M05.json"


def lines(p: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in p.read_bytes().splitlines()] if p.exists() else []


def start_analyzer(bus_dir: Path, cwd: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CASA_", "OTEL_"))}
    env["PYTHONPATH"] = str(CHECKOUT)
    kw: dict[str, Any] = {"user": CASA_USER, "group": CASA_USER, "extra_groups": []} if as_casa() else {}
    return subprocess.Popen([sys.executable, "-m", "analyzer", "--rules",
                             str(CHECKOUT / "config" / "rules.eval.json"), "--bus-dir", str(bus_dir),
                             "--no-checkpoint"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)


def _wait_sinks_hear_the_analyzer(bus_dir: Path) -> None:
    """Both sinks have received an analyzer heartbeat: their subscriptions are live (no sleep)."""
    listeners = [HeartbeatListener(bus_dir, s) for s in ("sinks-jsonl", "sinks-otel")]
    try:
        for hb in listeners:
            wait_for(lambda: hb.poll().get("received_messages", 0) > 0, timeout_s=30,
                     what="a sink subscribed to the analyzer")
    finally:
        for hb in listeners:
            hb.close()


def lifecycle(state: str, sid: int, created: int, updated: int, closed: int | None) -> dict[str, Any]:
    return {"kind": "session", "state": state, "session_id": sid, "profile": "openclaw-cli",
            "leader_tgid": 1001, "created_ns": created, "updated_ns": updated, "closed_ns": closed,
            "complete": True, "lost_events": 0}


def test_golden_m05_through_analyzer_and_sinks(tmp_path: Path) -> None:
    case = json.loads(GOLDEN.read_text())
    events = case["events"]
    sid = events[0]["session_id"]
    first, last = events[0]["ts_ns"], events[-1]["ts_ns"]
    bus_dir = shared_dir("casa-bus-")
    log_parent = shared_dir("casa-logs-", owner_casa=True)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    ctx = zmq.Context()
    sock = bus.bind_publisher(ctx, "sessionizer", bus_dir)
    pub = bus.Publisher(sock, "sessionizer")
    procs: list[subprocess.Popen[bytes]] = []
    with OtlpReceiver() as rx:
        try:
            procs.append(start_sink("jsonl", bus_dir, {"CASA_LOG_DIR": str(log_parent)}, cwd))
            procs.append(start_sink("otel", bus_dir, {"CASA_OTEL_EXPORTER_OTLP_ENDPOINT": rx.url}, cwd))
            procs.append(start_analyzer(bus_dir, cwd))
            assert sock.poll(20_000), "the analyzer never subscribed"
            sock.recv()
            _wait_sinks_hear_the_analyzer(bus_dir)
            pub.publish_now("sessionizer.session", [lifecycle("opened", sid, first, first, None)])
            pub.publish_now("sessionizer.event", [wire(e) for e in events])
            pub.publish_now("sessionizer.session", [lifecycle("closed", sid, first, last, last + 1)])
            alert = wait_for(lambda: lines(log_parent / "alert.log"), timeout_s=30, what="alert.log")
            wait_for(lambda: lines(log_parent / "sessions.log"), timeout_s=30, what="sessions.log")
            spans = rx.wait_for(lambda s: any(x["name"] == f"session {sid}" for x in s), timeout_s=30)
        finally:
            results = [stop(p) for p in reversed(procs)]
            sock.close(0)
            ctx.term()
    try:
        assert len(alert) == 1
        d = alert[0]["decision"]
        assert (d["action"], d["score"], d["log_threshold"], d["alert_threshold"]) == ("ALERT", 9, 4, 9)
        assert {r["name"] for r in d["triggered_rules"]} == {"write_then_exec_same_path",
                                                            "write_then_exec_from_suspicious_path"}
        assert len(d["rules_version"]) == 12
        assert alert[0]["event"]["type"] == "EXECVE" and alert[0]["event"]["path"] == "/tmp/openclaw-eval/helper.sh"
        assert lines(log_parent / "audit.log") == alert
        logged = lines(log_parent / "events.log")
        assert len(logged) == sum(e["kind"] in ("exec", "open", "connect", "exit") for e in events)
        session = lines(log_parent / "sessions.log")[-1]
        assert session["reason"] == "session_closed" and session["session"]["complete"] is True
        root = next(s for s in spans if s["name"] == f"session {sid}")
        a = root["attributes"]
        assert (a["casa.session.final_action"], a["casa.session.final_score"]) == ("ALERT", 9)
        assert "alert emitted" in [e["name"] for e in root["events"]]
        assert any(s["parent_span_id"] == root["span_id"] for s in spans if s["name"].startswith("process "))
    finally:
        shutil.rmtree(bus_dir, ignore_errors=True)
        shutil.rmtree(log_parent, ignore_errors=True)
    assert [code for code, _ in results] == [0, 0, 0], [err[-2000:] for _, err in results]
