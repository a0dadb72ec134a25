"""casa status and casa reload: selectors, result classification, and behaviour with nothing running."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from cli.heartbeats import Beat, event_rate
from cli.reload import expected_id, outcome
from cli.status import collect, render, select
from cli.supervisor import ProcessInfo

CHECKOUT = Path(__file__).resolve().parents[2]

PROCS = [ProcessInfo("collector", "collector", "RUNNING", 10, 5, ""),
         ProcessInfo("analyzer-0", "analyzer", "RUNNING", 11, 5, ""),
         ProcessInfo("analyzer-1", "analyzer", "BACKOFF", 0, 0, "")]


def beat(counters: dict, epoch: int = 1, t: float = 0.0) -> Beat:
    return Beat("analyzer-0", epoch, t, counters)


def test_select_all_group_and_name() -> None:
    assert select([], PROCS) == (PROCS, [])
    assert select(["all"], PROCS) == (PROCS, [])
    assert select(["analyzer:*"], PROCS)[0] == PROCS[1:]
    assert select(["collector", "nope"], PROCS) == ([PROCS[0]], ["nope"])


def test_event_rate_needs_two_beats_of_one_epoch() -> None:
    assert event_rate([beat({"sent_events": 5})]) is None
    assert event_rate([beat({"sent_events": 5}, t=0), beat({"sent_events": 105}, t=2)]) == 50
    assert event_rate([beat({"sent_events": 5}, 1, 0), beat({"sent_events": 9}, 2, 1)]) is None


def test_render_shows_state_rate_and_nonzero_loss() -> None:
    class Listener:
        beats = {"analyzer-0": [beat({"sent_events": 0, "lost_messages": 0}, t=0),
                                beat({"sent_events": 30, "lost_messages": 2, "rules_version": "abc",
                                      "reloads_applied": 1}, t=1)]}
    rows = collect(PROCS, Listener())   # type: ignore[arg-type]
    text = "\n".join(render(rows))
    assert "analyzer-0    RUNNING" in text and "30.0" in text and "lost_messages=2" in text
    assert "rules=abc reloads_applied=1" in text
    assert "no heartbeat" in text.splitlines()[1]          # the collector sent none here
    assert all(len(line) < 80 for line in text.splitlines())


def test_reload_outcome_classification() -> None:
    base = beat({"reloads_applied": 1, "reloads_rejected": 0, "rules_version": "old"})
    assert outcome("a", base, beat({"reloads_applied": 2, "reloads_rejected": 0, "rules_version": "new"})).line() \
        == "a: ok (applied, rules_version=new)"
    rejected = outcome("a", base, beat({"reloads_applied": 1, "reloads_rejected": 1, "rules_version": "old"}))
    assert rejected.state == "rejected" and "old config kept" in rejected.line()
    assert outcome("a", base, base).state == "pending"
    assert outcome("a", base, beat({"reloads_applied": 0}, epoch=2)).state == "restarted"
    assert outcome("a", beat({"sent_events": 1}), None).state == "no counters"
    assert outcome("a", None, None).state == "no counters"


def test_status_and_reload_without_a_stack(tmp_path: Path) -> None:
    env = {**os.environ, "CASA_BUS_DIR": str(tmp_path),
           "CASA_SUPERVISOR_URL": f"unix://{tmp_path / 'supervisord.sock'}"}
    st = subprocess.run([sys.executable, "-m", "cli", "status", "-w", "0"], capture_output=True, text=True,
                        env=env, cwd=CHECKOUT, timeout=30)
    assert st.returncode == 3 and "supervisord: ERROR (not running" in st.stderr
    rl = subprocess.run([sys.executable, "-m", "cli", "reload", "--pid-file", str(tmp_path / "none.pid")],
                        capture_output=True, text=True, env=env, cwd=CHECKOUT, timeout=30)
    assert rl.returncode == 3 and "collector: ERROR (not running" in rl.stderr


def test_reload_outcome_of_the_collector_names_its_config_version() -> None:
    base = beat({"reloads": 1, "reloads_applied": 1, "reloads_rejected": 0, "config_version": "old"})
    ok = outcome("collector", base, beat({"reloads": 2, "reloads_applied": 2, "reloads_rejected": 0,
                                          "config_version": "new"}))
    assert ok.line() == "collector: ok (applied, config_version=new)"
    bad = outcome("collector", base, beat({"reloads": 2, "reloads_applied": 1, "reloads_rejected": 1,
                                           "config_version": "old"}))
    assert bad.state == "rejected" and "config_version=old" in bad.line()

    class Listener:
        beats = {"collector": [Beat("collector", 1, 0.0, {"reloads_applied": 1, "reloads_rejected": 1,
                                                           "config_version": "old"})]}
    text = "\n".join(render(collect(PROCS[:1], Listener())))     # type: ignore[arg-type]
    assert "config=old reloads_applied=1 reloads_rejected=1" in text, text


def test_reload_outcome_accepts_older_counter_names() -> None:
    base = beat({"reloads_ok": 0, "reloads_failed": 0})
    assert outcome("a", base, beat({"reloads_ok": 1, "reloads_failed": 0})).state == "applied"
    assert outcome("a", base, beat({"reloads_ok": 0, "reloads_failed": 1})).state == "rejected"


def test_render_shows_the_sinks_loss_counters() -> None:
    sink_loss = {"lost_records": 1, "write_errors": 2, "backlog": 3, "spans_dropped": 4,
                 "export_failures": 5, "malformed_maps": 6, "late_messages": 7}

    class Listener:
        beats = {"sinks-jsonl": [Beat("sinks-jsonl", 1, 0.0, {"received_events": 1, **sink_loss})]}
    procs = [ProcessInfo("sinks-jsonl", "sinks", "RUNNING", 12, 5, "")]
    text = "\n".join(render(collect(procs, Listener())))    # type: ignore[arg-type]
    for name, value in sink_loss.items():
        assert f"{name}={value}" in text, text


def test_reload_waits_for_the_acknowledgement_of_its_own_reload_id() -> None:
    before = beat({"reloads_applied": 1, "reloads_rejected": 0, "last_reload_id": 4, "rules_version": "a"})
    moved_for_an_older_reload = beat({"reloads_applied": 2, "reloads_rejected": 0, "last_reload_id": 4})
    assert outcome("a", before, moved_for_an_older_reload, expected=5).state == "pending"
    assert "waited for reload id 5; its last heartbeat says 4" in \
        outcome("a", before, moved_for_an_older_reload, expected=5).line()
    acked = beat({"reloads_applied": 2, "reloads_rejected": 0, "last_reload_id": 5, "rules_version": "b"})
    assert outcome("a", before, acked, expected=5).line() == "a: ok (applied, rules_version=b)"
    silent = beat({"reloads_applied": 1, "reloads_rejected": 0, "last_reload_id": 5})
    assert outcome("a", before, silent, expected=5).state == "no result"
    collector = Beat("collector", 1, 0.0, {"reloads": 7, "reloads_applied": 7, "reloads_rejected": 0})
    after = Beat("collector", 1, 1.0, {"reloads": 8, "reloads_applied": 8, "reloads_rejected": 0})
    assert expected_id({"collector": collector}) == 8
    assert outcome("collector", collector, after, expected=8).state == "applied"
    assert expected_id({"collector": None}) is None


# Stand-in stages whose heartbeats come every 2.5 s (a loaded machine: the old fixed 1.3 s
# baseline window then missed them) and which acknowledge a reload 1.5 s after the signal.
# analyzer-1 never acknowledges: its line must say which id it waited for.
SLOW_STAGES = r"""
import os, signal, sys, time, zmq
from pathlib import Path
from bus import Publisher, bind_publisher
d = Path(sys.argv[1])
ctx = zmq.Context()
pubs = {s: Publisher(bind_publisher(ctx, s, d), s.split("-")[0], s, heartbeat_interval_s=2.5)
        for s in ("collector", "sessionizer", "analyzer-0", "analyzer-1")}
state = {s: {"reloads_applied": 0, "reloads_rejected": 0, "last_reload_id": 0, "rules_version": "v0"}
         for s in pubs}
state["collector"] = {"reloads": 0, "reloads_applied": 0, "reloads_rejected": 0, "config_version": "c0"}
hup = []
signal.signal(signal.SIGHUP, lambda *_: hup.append(time.monotonic()))
(d / "collector.pid").write_text(f"{os.getpid()}\n")
while True:
    now = time.monotonic()
    if hup and not state["collector"]["reloads"]:
        state["collector"].update(reloads=1, reloads_applied=1, config_version="c1")
    if hup and now - hup[0] > 1.5:
        for s in ("sessionizer", "analyzer-0"):
            state[s].update(reloads_applied=1, last_reload_id=1, rules_version="v1")
    for s, pub in pubs.items():
        if pub.heartbeat_due(now):
            pub.heartbeat(state[s], now)
    time.sleep(0.05)
"""


def test_reload_under_late_heartbeats_reports_each_stage_and_names_the_missing_ack(tmp_path: Path) -> None:
    standin = tmp_path / "standin"
    (standin / "collector").mkdir(parents=True)          # `python -m collector`, as casa reload expects
    (standin / "collector" / "__init__.py").write_text("")      # a regular package: it shadows ours
    (standin / "collector" / "__main__.py").write_text(SLOW_STAGES)
    proc = subprocess.Popen([sys.executable, "-m", "collector", str(tmp_path)], cwd=standin,
                            env={**os.environ, "PYTHONPATH": str(CHECKOUT)})
    try:
        deadline = time.monotonic() + 10
        while not (tmp_path / "collector.pid").exists():
            assert time.monotonic() < deadline and proc.poll() is None, "stand-in stages did not start"
            time.sleep(0.05)
        out = subprocess.run([sys.executable, "-m", "cli", "reload", "--bus-dir", str(tmp_path),
                              "--pid-file", str(tmp_path / "collector.pid"), "-t", "6"],
                             capture_output=True, text=True, cwd=CHECKOUT, timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"collector: ok (SIGHUP sent to pid {proc.pid}, reload id 1)" in out.stdout
    assert "collector: ok (applied, config_version=c1)" in out.stdout
    assert "sessionizer: ok (applied, rules_version=v1)" in out.stdout
    assert "analyzer-0: ok (applied, rules_version=v1)" in out.stdout
    assert "analyzer-1: ERROR (no result in time (waited for reload id 1; its last heartbeat says 0)" \
        in out.stderr, out.stderr
