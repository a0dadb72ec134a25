"""The analyzer as a real process on a real bus (runs as the casa user when the tests are root)."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.analyzer.analyzer_process import CHECKOUT, Bench, as_casa
from tests.analyzer.analyzer_sequences import lifecycle

GOLDEN = CHECKOUT / "tests" / "fixtures" / "golden"


def golden(case: str, session_id: int) -> list[dict[str, Any]]:
    events = json.loads((GOLDEN / f"{case}.json").read_text())["events"]
    return [{**e, "session_id": session_id} for e in events]


@pytest.fixture
def bench() -> Iterator[Bench]:
    b = Bench()
    yield b
    b.close()


def feed(b: Bench, cases: dict[int, str]) -> None:
    for sid, case in cases.items():
        b.send("sessionizer.session", [lifecycle(sid, "opened")])
        events = golden(case, sid)
        for i in range(0, len(events), 4):                   # several envelopes per session
            b.send("sessionizer.event", events[i:i + 4])
        b.send("sessionizer.session", [lifecycle(sid, "closed")])


def closed(n: int):
    return lambda got: sum(1 for t, m in got if t == "analyzer.session" and m["state"] == "closed") >= n


def test_golden_case_over_the_bus(bench: Bench):
    bench.start()
    if as_casa():                                            # never root: only the collector is
        status = Path(f"/proc/{bench.procs[0].pid}/status").read_text()
        uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
        assert int(uid) == pwd.getpwnam("casa").pw_uid
    feed(bench, {25: "M05"})
    got = bench.collect(closed(1))
    topics = [t for t, _ in got]
    assert topics[0] == "analyzer.session" and topics[-1] == "analyzer.session"
    events = [m for t, m in got if t == "analyzer.event"]
    assert events == golden("M05", 25)                       # passed through, unchanged, in order
    (d,) = [m for t, m in got if t == "analyzer.decision"]
    assert d["action"] == "ALERT" and d["score"] == 9 and d["event"]["path"] == "/tmp/openclaw-eval/helper.sh"
    # the decision follows its triggering event on the wire
    assert topics.index("analyzer.decision") > topics.index("analyzer.event") and \
        got[topics.index("analyzer.decision") - 1][1] == d["event"]
    snap = got[-1][1]
    assert snap["score"] == 9 and snap["action"] == "ALERT" and snap["complete"] is True
    assert len(snap["recent_events"]) == len(events)
    assert bench.stop() == [0]
    assert "analyzer stopped" in bench.logs()


def test_two_instances_decide_like_one():
    cases = {sid: case for sid, case in zip(range(1, 11), ["M01", "M02", "M03", "M04", "M05", "M06",
                                                           "M08", "M09", "M10", "B10"])}

    def run(instances: int) -> list[dict[str, Any]]:
        b = Bench()
        try:
            b.start(instances)
            feed(b, cases)
            got = b.collect(closed(len(cases)))
            return sorted((m for t, m in got if t == "analyzer.decision"),
                          key=lambda m: (m["session_id"], m["ts_ns"]))
        finally:
            b.close()

    one, two = run(1), run(2)
    assert len(one) == 11 and one == two


def test_reload_broken_then_valid(bench: Bench):
    bench.start()
    original = bench.rules.read_bytes()
    doc = json.loads(original)
    doc["rules"][6]["expr"] = "history.write_then_exec_same_path &&"
    bench.write_rules(json.dumps(doc, indent=2).encode())
    ctl = {"kind": "control", "command": "reload", "id": 1, "requested_ns": 0}
    bench.send("sessionizer.control", [ctl])
    got = bench.collect(lambda g: any(t == "analyzer.control" for t, _ in g))
    assert ("analyzer.control", ctl) in got
    feed(bench, {3: "M05"})
    got = bench.collect(closed(1))
    (d,) = [m for t, m in got if t == "analyzer.decision"]
    assert d["score"] == 9 and len(d["rules_version"]) == 12     # the old rules still score
    old_version = d["rules_version"]
    logs = bench.logs()
    assert "rule 'write_then_exec_same_path' expr does not compile" in logs
    assert f"keeping the 12 rules of version {old_version}" in logs

    doc = json.loads(original)
    doc["rules"][6]["weight"] = 7
    bench.write_rules(json.dumps(doc, indent=2).encode())
    bench.send("sessionizer.control", [{**ctl, "id": 2}])
    bench.collect(lambda g: any(t == "analyzer.control" for t, _ in g))
    feed(bench, {4: "M05"})
    got = bench.collect(closed(1))
    (d,) = [m for t, m in got if t == "analyzer.decision"]
    assert d["score"] == 11 and d["rules_version"] != old_version
    assert f"rules reloaded | version={d['rules_version']} rules=12" in bench.logs()


def _acknowledged(bench: Bench, reload_id: int, timeout_s: float = 15.0) -> dict[str, Any]:
    """The counters of the first heartbeat that acknowledges reload ``reload_id``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for topic, env in bench.receive(0.1):
            if topic == "analyzer.heartbeat" and (env.counters or {}).get("last_reload_id") == reload_id:
                return dict(env.counters)
    raise AssertionError(f"no heartbeat acknowledged reload {reload_id}: {bench.logs()[-800:]}")


@pytest.mark.parametrize("expr, says", [
    ("execution.memfd_exec", "names execution.memfd_exec, which is not a context field"),
    ("history.burst_exec > 3", "compares history.burst_exec (a bool) with 3 (an int)")])
def test_reload_of_a_rule_that_could_never_match_is_rejected(bench: Bench, expr: str, says: str):
    """A misspelled field or a type error is an error: the reload is rejected (counted, the
    heartbeat says so, so `casa reload` reports ERROR) and the old rules keep scoring."""
    bench.start()
    doc = json.loads(bench.rules.read_bytes())
    doc["rules"][0]["expr"] = expr
    bench.write_rules(json.dumps(doc, indent=2).encode())
    bench.send("sessionizer.control", [{"kind": "control", "command": "reload", "id": 5, "requested_ns": 0}])
    counters = _acknowledged(bench, 5)
    assert counters["reloads_rejected"] == 1 and counters["reloads_applied"] == 0
    logs = bench.logs()
    assert f"rule 'memfd_or_deleted_exec' expr {says}" in logs and "reload=failed" in logs
    feed(bench, {6: "M09"})                       # memfd exec: the old memfd rule still scores
    (d,) = [m for t, m in bench.collect(closed(1)) if t == "analyzer.decision"]
    assert d["triggered_rules"][0]["name"] == "memfd_or_deleted_exec"


def test_malformed_messages_do_not_stop_the_analyzer(bench: Bench):
    bench.start()
    bench.xpub.send_multipart([b"sessionizer.event", b"\xc1 not msgpack"])
    bench.send("sessionizer.event", [{"kind": "exec", "session_id": "x"}])
    feed(bench, {5: "M09"})
    got = bench.collect(closed(1))
    (d,) = [m for t, m in got if t == "analyzer.decision"]
    assert d["triggered_rules"][0]["name"] == "memfd_or_deleted_exec"
    hb = [env for t, env in bench.receive(1.5) if t == "analyzer.heartbeat"]
    assert hb and hb[-1].counters["malformed"] == 1 and hb[-1].counters["events_malformed"] == 1


def test_bad_rules_at_start_exit_1(tmp_path):
    b = Bench(rules_text=b"{not json")
    try:
        with pytest.raises(RuntimeError, match="analyzer exited with 1"):
            b.start()
        assert "not valid JSON" in b.logs()
    finally:
        b.close()


def test_restart_restores_open_sessions(bench: Bench):
    """SIGTERM checkpoints; the restarted analyzer continues the session without re-scoring."""
    events = golden("M10", 6)
    split = next(i for i, e in enumerate(events) if e["kind"] == "connect") + 1
    bench.start(checkpoint=True)
    bench.send("sessionizer.session", [lifecycle(6, "opened")])
    bench.send("sessionizer.event", events[:split])
    got = bench.collect(lambda g: any(t == "analyzer.decision" for t, _ in g))
    assert [m["score"] for t, m in got if t == "analyzer.decision"] == [9]
    assert bench.stop() == [0]
    assert (bench.dir / "state" / "analyzer-0.json").exists()
    bench.start(checkpoint=True)
    bench.send("sessionizer.event", events[split:])
    bench.send("sessionizer.session", [lifecycle(6, "closed")])
    got = bench.collect(closed(1))
    (d,) = [m for t, m in got if t == "analyzer.decision"]
    assert d["score"] == 34 and d["increment"] == 25
    assert "sensitive_file_then_network" not in str(d["triggered_rules"])
    snap = [m for t, m in got if t == "analyzer.session"][-1]
    assert snap["complete"] is False and len(snap["recent_events"]) == len(events)
    assert "restored analyzer sessions from checkpoint" in bench.logs()


def test_restart_counts_the_messages_published_while_down(bench: Bench):
    """The checkpoint keeps the input position: what the sessionizer published while the
    analyzer was down is counted as lost on the first message after the restart."""
    events = golden("M10", 6)
    bench.start(checkpoint=True)
    bench.send("sessionizer.session", [lifecycle(6, "opened")])
    bench.send("sessionizer.event", events[:2])
    bench.collect(lambda g: sum(1 for t, _ in g if t == "analyzer.event") >= 2)
    assert bench.stop() == [0]
    for e in events[2:5]:                                    # three messages nobody receives
        bench.send("sessionizer.event", [e])
    bench.start(checkpoint=True)
    bench.send("sessionizer.event", events[5:])
    bench.send("sessionizer.session", [lifecycle(6, "closed")])
    got = bench.collect(closed(1))
    assert [m for t, m in got if t == "analyzer.session"][-1]["complete"] is False
    lost = None
    for _ in range(30):
        beats = [env.counters for t, env in bench.receive(0.2) if t == "analyzer.heartbeat"]
        if beats:
            lost = beats[-1].get("lost_messages")
            break
    assert lost == 3, bench.logs()[-2000:]
    assert "sessionizer messages lost; open sessions marked incomplete | lost=3" in bench.logs()


@pytest.mark.parametrize("argv, env, message", [
    (["--instance", "2", "--instances", "2"], {}, "--instance must be in 0..1"),
    ([], {"CASA_ANALYZER_INSTANCES": "two"}, "CASA_ANALYZER_INSTANCES must be a positive integer"),
])
def test_bad_arguments_exit_2(argv, env, message):
    r = subprocess.run(["timeout", "-s", "INT", "20", sys.executable, "-m", "analyzer", *argv],
                       capture_output=True, text=True, cwd=CHECKOUT, env={**os.environ, **env},
                       check=False)
    assert r.returncode == 2 and message in r.stderr


def test_help_has_examples():
    r = subprocess.run([sys.executable, "-m", "analyzer", "--help"], capture_output=True, text=True,
                       cwd=CHECKOUT, check=True)
    assert "examples:" in r.stdout and "--instances" in r.stdout
