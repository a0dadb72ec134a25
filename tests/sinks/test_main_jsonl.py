"""``python -m sinks jsonl`` as a real process on a real bus, fed by a stand-in analyzer."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bus.text import to_bytes
from bus.topics import ANALYZER_CONTROL, ANALYZER_DECISION, ANALYZER_EVENT, ANALYZER_SESSION
from tests.sinks.bus_harness import (HeartbeatListener, StandInAnalyzer, as_casa, shared_dir,
                                     start_sink, stop, wait_for)
from tests.sinks.sink_maps import README_ALERT_TS_NS, exec_event, readme_decision, session_map
from tests.sinks.sink_rig import SinkRig

ODD_PATH = "/tmp/odd\udcff\nname.sh"     # a non-UTF-8 byte and a newline


def lines(p: Path) -> list[dict]:
    if not p.exists():
        return []
    return [json.loads(x) for x in p.read_bytes().splitlines()]


class Rig(SinkRig):
    def __init__(self, tmp: Path) -> None:
        self.bus_dir = shared_dir("casa-bus-")
        self.log_parent = shared_dir("casa-logs-", owner_casa=True)
        self.log_dir = self.log_parent / "casa"           # created by the sink
        self.cwd = tmp / "cwd"
        self.cwd.mkdir()
        (self.cwd / ".env").write_text(f"CASA_LOG_DIR={self.log_dir}\nexport CASA_ALERT_LOG_PATH="
                                       f"'{self.log_dir}/alerts-from-env-file.log'\n")
        self.analyzer = StandInAnalyzer(self.bus_dir)
        self.proc = start_sink("jsonl", self.bus_dir, {}, self.cwd)
        self.analyzer.wait_subscribed()
        self.hb = HeartbeatListener(self.bus_dir, "sinks-jsonl")

    def log(self, name: str) -> Path:
        return self.log_dir / name

    def close(self) -> tuple[int, str]:
        code, err = super().close()
        shutil.rmtree(self.log_parent, ignore_errors=True)
        return code, err


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    if r.proc.poll() is None:
        r.close()


def session_events() -> list[dict]:
    t = README_ALERT_TS_NS
    base = {"tid": 4242, "ppid": 4200, "uid": 1000, "comm": "bash", "root": 4000, "session_id": 25,
            "profile": "openclaw", "depth": 2}
    return [
        {**base, "kind": "open", "ts_ns": t - 10, "tgid": 4242, "syscall": "openat",
         "path": ODD_PATH, "flags": 0x241, "mode": 0o755, "ret": 3},
        exec_event(ts_ns=t),
        {**base, "kind": "connect", "ts_ns": t + 10, "tgid": 4242, "family": 2, "addr": "127.0.0.1",
         "port": 18000, "ret": 0},
        {**base, "kind": "fork", "ts_ns": t + 15, "tgid": 4242, "child_tgid": 4243},
        {**base, "kind": "exit", "ts_ns": t + 20, "tgid": 4242, "exit_code": 0},
    ]


def test_a_session_becomes_the_four_logs(rig: Rig) -> None:
    a = rig.analyzer
    a.send(ANALYZER_SESSION, [session_map("opened")])
    a.send(ANALYZER_EVENT, session_events())
    a.send(ANALYZER_DECISION, [readme_decision(), readme_decision(triggered_rules=[], action="IGNORE")])
    a.send(ANALYZER_SESSION, [session_map("flushed")])
    a.send(ANALYZER_SESSION, [session_map("closed", closed_ns=README_ALERT_TS_NS + 30)])
    wait_for(lambda: len(lines(rig.log("sessions.log"))) == 2, what="two session snapshots")
    events = lines(rig.log("events.log"))
    assert [e["type"] for e in events] == ["OPENAT", "EXECVE", "CONNECT", "EXIT"]   # fork skipped
    assert to_bytes(events[0]["path"]) == b"/tmp/odd\xff\nname.sh"
    audit, alert = lines(rig.log("audit.log")), lines(rig.log("alerts-from-env-file.log"))
    assert len(audit) == 1 and audit == alert
    assert audit[0]["decision"]["triggered_rules"][0]["name"] == "write_then_exec_same_path"
    sessions = lines(rig.log("sessions.log"))
    assert [s["reason"] for s in sessions] == ["periodic_flush", "session_closed"]
    assert all(s["session"]["complete"] for s in sessions)
    assert not rig.log("alert.log").exists()          # the .env file chose another path
    for name in ("events.log", "sessions.log", "audit.log", "alerts-from-env-file.log"):
        st = os.stat(rig.log(name))
        assert stat.S_IMODE(st.st_mode) == 0o640
        if as_casa():
            assert st.st_uid == pwd.getpwnam("casa").pw_uid
    # a heartbeat sent between the events and the decision is not the last word: wait for one
    # that has seen everything the logs already show
    counters = wait_for(lambda: rig.hb.poll().get("audit_written") == 1 and rig.hb.latest,
                        what="heartbeat counters")
    assert counters["events_written"] == 4
    assert counters["skipped_kinds"] == 1 and counters["audit_written"] == 1
    assert counters["lost_records"] == 0 and counters["write_errors"] == 0
    code, err = rig.close()
    assert code == 0, err
    assert "sink stopped | stream=sinks-jsonl" in err


def test_loss_on_the_analyzer_stream_marks_open_sessions_incomplete(rig: Rig) -> None:
    a = rig.analyzer
    a.send(ANALYZER_SESSION, [session_map("opened", session_id=7)])
    a.send(ANALYZER_EVENT, [exec_event(session_id=7)])
    a.skip(ANALYZER_EVENT, 3)                          # three event batches never arrive
    a.send(ANALYZER_EVENT, [exec_event(session_id=7)])
    a.send(ANALYZER_SESSION, [session_map("closed", session_id=7, closed_ns=README_ALERT_TS_NS)])
    a.send(ANALYZER_SESSION, [session_map("opened", session_id=8)])
    a.send(ANALYZER_SESSION, [session_map("closed", session_id=8, closed_ns=README_ALERT_TS_NS)])
    got = wait_for(lambda: (s := lines(rig.log("sessions.log"))) and len(s) == 2 and s,
                   what="two closed sessions")
    assert {s["session_id"]: s["session"]["complete"] for s in got} == {7: False, 8: True}
    code, err = rig.close()
    assert code == 0 and "open sessions marked incomplete" in err and "sessions=7" in err


def restart_then_close(rig: Rig, session_id: int, tgid: int) -> dict[str, Any]:
    """Start the sink again, send one exec of the session and its close: the sessions.log record."""
    rig.proc = start_sink("jsonl", rig.bus_dir, {}, rig.cwd)
    rig.analyzer.wait_subscribed()
    rig.analyzer.send(ANALYZER_EVENT, [exec_event(session_id=session_id, tgid=tgid)])
    rig.analyzer.send(ANALYZER_SESSION, [session_map("closed", session_id=session_id,
                                                     closed_ns=README_ALERT_TS_NS)])
    (closed,) = wait_for(lambda: lines(rig.log("sessions.log")), what="the closed session")
    return closed


def test_restart_counts_what_was_published_while_down(rig: Rig) -> None:
    """The sink keeps its input position: after a restart the first message reveals the gap, and
    a session it joins mid-way is written as incomplete."""
    a = rig.analyzer
    a.send(ANALYZER_SESSION, [session_map("opened", session_id=9)])
    a.send(ANALYZER_EVENT, [exec_event(session_id=9, tgid=1)])
    wait_for(lambda: len(lines(rig.log("events.log"))) == 1, what="first event")
    code, err = stop(rig.proc)
    assert code == 0, err
    a.send(ANALYZER_EVENT, [exec_event(session_id=9, tgid=2)])      # nobody is listening
    a.send(ANALYZER_EVENT, [exec_event(session_id=9, tgid=3)])
    closed = restart_then_close(rig, session_id=9, tgid=4)
    assert closed["session"]["complete"] is False
    assert [e["pid"] for e in lines(rig.log("events.log"))] == [1, 4]
    counters = wait_for(lambda: (c := rig.hb.poll()).get("lost_messages") and c, what="loss counted")
    assert counters["lost_messages"] == 2 and counters["sessions_joined_midway"] == 1


def test_malformed_maps_are_counted_and_dropped(rig: Rig) -> None:
    a = rig.analyzer
    a.send(ANALYZER_EVENT, [{"kind": "exec", "tgid": "x"}, exec_event()])
    a.send(ANALYZER_DECISION, [{"kind": "decision", "triggered_rules": [{"name": "r"}]}])
    a.send(ANALYZER_SESSION, [{"kind": "session", "state": "closed"}])
    a.send(ANALYZER_DECISION, ["junk", 42])            # the bus layer drops this whole message
    a.send(ANALYZER_EVENT, [exec_event(ts_ns="late")])
    wait_for(lambda: (c := rig.hb.poll()).get("malformed_maps") == 4 and c.get("malformed") == 1,
             what="four malformed maps and one malformed message counted")
    assert len(lines(rig.log("events.log"))) == 1
    assert rig.proc.poll() is None                     # still running


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the sink as casa and deny it the directory")
def test_unwritable_log_directory_then_writable_loses_nothing(rig: Rig) -> None:
    a = rig.analyzer
    a.send(ANALYZER_EVENT, [exec_event()])
    wait_for(lambda: len(lines(rig.log("events.log"))) == 1, what="first event")
    os.chown(rig.log_dir, 0, 0)                        # casa can no longer create files here
    os.chmod(rig.log_dir, 0o755)
    rig.log("events.log").rename(rig.log_dir / "events.log.1")    # rotated away
    a.send(ANALYZER_EVENT, [exec_event(tgid=n) for n in range(100, 150)])
    counters = wait_for(lambda: (c := rig.hb.poll()).get("events_backlog") == 50 and c,
                        what="backlog of 50")
    assert counters["write_errors"] >= 1 and counters["events_written"] == 1
    assert rig.proc.poll() is None
    os.chown(rig.log_dir, pwd.getpwnam("casa").pw_uid, pwd.getpwnam("casa").pw_gid)
    got = wait_for(lambda: len(x := lines(rig.log("events.log"))) == 50 and x, what="backlog written")
    assert [e["pid"] for e in got] == list(range(100, 150))
    code, err = rig.close()
    assert code == 0 and "cannot write log file; records kept and retried" in err
    assert "Permission denied" in err and "log file writable again" in err


def test_reload_and_sighup_reopen_rotated_files(rig: Rig) -> None:
    a = rig.analyzer
    a.send(ANALYZER_EVENT, [exec_event(tgid=1)])
    wait_for(lambda: lines(rig.log("events.log")), what="first event")
    rig.log("events.log").rename(rig.log_dir / "old.log")
    a.send(ANALYZER_CONTROL, [{"kind": "control", "command": "reload", "id": 1, "requested_ns": 1}])
    a.send(ANALYZER_EVENT, [exec_event(tgid=2)])
    wait_for(lambda: lines(rig.log("events.log")), what="event in the reopened file")
    assert [e["pid"] for e in lines(rig.log("events.log"))] == [2]
    rig.log("events.log").rename(rig.log_dir / "older.log")
    wait_for(lambda: rig.hb.poll().get("reopens", 0) >= 4, what="the reload's reopen of the four files")
    rig.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: rig.hb.poll().get("reopens", 0) >= 8, what="the SIGHUP acted on (four more)")
    a.send(ANALYZER_EVENT, [exec_event(tgid=3)])
    wait_for(lambda: lines(rig.log("events.log")), what="event after SIGHUP")
    assert wait_for(lambda: rig.hb.poll().get("reloads_applied") == 1, what="reload counted")
    code, err = rig.close()
    assert code == 0 and "reason=SIGHUP" in err and "reason=reload" in err


def test_shutdown_snapshot_then_continued_session_stays_complete(rig: Rig) -> None:
    a = rig.analyzer
    a.send(ANALYZER_SESSION, [session_map("opened", session_id=9)])
    a.send(ANALYZER_SESSION, [session_map("shutdown", session_id=9)])      # sessionizer restarting
    a.send(ANALYZER_EVENT, [exec_event(session_id=9)])                     # ... and continuing
    a.send(ANALYZER_SESSION, [session_map("closed", session_id=9, closed_ns=README_ALERT_TS_NS)])
    got = wait_for(lambda: len(s := lines(rig.log("sessions.log"))) == 2 and s, what="two snapshots")
    assert [(s["reason"], s["session"]["complete"]) for s in got] == [("shutdown", True),
                                                                      ("session_closed", True)]


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to try the logs as another user")
def test_another_user_can_neither_write_nor_truncate_the_logs(rig: Rig) -> None:
    import subprocess
    import sys
    rig.analyzer.send(ANALYZER_EVENT, [exec_event()])
    wait_for(lambda: lines(rig.log("events.log")), what="first event")
    os.chmod(rig.log_parent, 0o755)                   # even with the directories open to all ...
    os.chmod(rig.log_dir, 0o755)
    probe = ("import sys\nfor mode in ('a', 'r+', 'w'):\n    try:\n        open(sys.argv[1], mode)\n"
             "    except PermissionError:\n        continue\n    sys.exit('opened with ' + mode)\n")
    r = subprocess.run([sys.executable, "-c", probe, str(rig.log("events.log"))], user="nobody",
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr                # ... an agent's user cannot modify them
    assert len(lines(rig.log("events.log"))) == 1


def test_rotation_under_load_loses_and_tears_nothing(rig: Rig) -> None:
    a = rig.analyzer
    a.send(ANALYZER_EVENT, [exec_event(tgid=0)])
    wait_for(lambda: lines(rig.log("events.log")), what="first event")
    rotated = []
    for batch in range(1, 101):
        a.send(ANALYZER_EVENT, [exec_event(tgid=batch * 100 + i) for i in range(50)])
        time.sleep(0.012)                              # ~1.2 s of steady traffic
        if batch % 20 == 0 and rig.log("events.log").exists():   # not yet recreated: skip
            dest = rig.log_dir / f"events.log.{batch}"
            rig.log("events.log").rename(dest)
            rotated.append(dest)
            time.sleep(0.05)
    time.sleep(0.3)                                    # past the rotation check interval
    a.send(ANALYZER_EVENT, [exec_event(tgid=1)])
    expected = {0, 1} | {b * 100 + i for b in range(1, 101) for i in range(50)}

    def all_pids() -> list[int]:
        return [e["pid"] for p in [*rotated, rig.log("events.log")] for e in lines(p)]
    got = wait_for(lambda: len(x := all_pids()) == len(expected) and x, what="every event, once")
    assert sorted(got) == sorted(expected) and len(rotated) >= 2
    assert rig.log("events.log").exists()             # reopened after the last rotation


def _checkpoint(rig: Rig) -> dict:
    path = rig.cwd / "state" / "sinks-jsonl.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _seq(positions: list[dict], topic: str) -> int:
    return next((p["seq"] for p in positions if p["topic"] == topic), 0)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the sink as casa and deny it the directory")
def test_a_sink_killed_with_its_backlog_in_memory_counts_it_after_the_restart(rig: Rig) -> None:
    """Its position is saved only for what is written: the restarted sink finds the five
    messages whose records died in memory as a gap, and the session they belong to incomplete."""
    a = rig.analyzer
    a.send(ANALYZER_SESSION, [session_map("opened", session_id=11)])
    a.send(ANALYZER_EVENT, [exec_event(session_id=11, tgid=1)])
    wait_for(lambda: len(lines(rig.log("events.log"))) == 1, what="first event")
    os.chown(rig.log_dir, 0, 0)                        # casa can no longer create files here
    os.chmod(rig.log_dir, 0o755)
    rig.log("events.log").rename(rig.log_dir / "events.log.1")
    for k in range(5):                                 # five messages, fifty records: backlog
        a.send(ANALYZER_EVENT, [exec_event(session_id=11, tgid=100 + 10 * k + i) for i in range(10)])
    wait_for(lambda: rig.hb.poll().get("events_backlog") == 50, what="backlog of 50")
    saved = wait_for(lambda: (c := _checkpoint(rig)) and _seq(c["received"], ANALYZER_EVENT) == 6 and c,
                     what="a checkpoint that has seen the five messages")
    assert _seq(saved["bus"], ANALYZER_EVENT) == 1     # durable: only the first message
    rig.proc.kill()                                    # kill -9 with fifty records in memory
    rig.proc.communicate()
    os.chown(rig.log_dir, pwd.getpwnam("casa").pw_uid, pwd.getpwnam("casa").pw_gid)
    closed = restart_then_close(rig, session_id=11, tgid=999)
    assert closed["session"]["complete"] is False
    assert [e["pid"] for e in lines(rig.log("events.log"))] == [999]
    counters = wait_for(lambda: (c := rig.hb.poll()).get("lost_messages") and c, what="loss counted")
    assert counters["lost_messages"] == 5 and counters["sessions_joined_midway"] == 1


def schema_2_session() -> list[tuple[str, list[dict]]]:
    """A session with schema-2 traffic: role, a hidden write, abspath, a cut path, the exec's
    facts, every contract kind (tests/sinks/test_records.py NEW_KINDS), a decision with
    evidence and a lifecycle map with the tree fields."""
    from tests.sinks.sink_maps import NEW_KINDS
    t = README_ALERT_TS_NS
    base = {"tid": 4242, "ppid": 4200, "uid": 1000, "comm": "bash", "root": 4000, "session_id": 26,
            "profile": "openclaw", "depth": 2, "tree_id": 5, "shard": 5, "tgid": 4242}
    cut = "/tmp/" + "a" * 4089
    events = [
        exec_event(session_id=26, ts_ns=t, role="agent", tree_id=5, shard=5, abspath="/tmp/openclaw-eval/helper.sh",
                   stdio=[{"type": "inet", "family": 2, "addr": "127.0.0.1", "port": 4444}] * 3,
                   parent_stdio=["tty", "tty", "tty"], ld_env={"LD_PRELOAD": "/tmp/x.so"}, euid=1000,
                   prev_euid=1000),
        {**base, "kind": "open", "ts_ns": t + 1, "syscall": "openat", "path": "/home/u/.openclaw/state.json",
         "flags": 0x241, "mode": 0o600, "ret": 3, "role": "agent", "hidden": "runtime_noise"},
        {**base, "kind": "open", "ts_ns": t + 2, "syscall": "openat", "path": "x.sh", "abspath": ODD_PATH,
         "flags": 0x241, "mode": 0o755, "ret": 3},
        {**base, "kind": "open", "ts_ns": t + 3, "syscall": "openat", "path": cut, "path_truncated": True,
         "flags": 0, "mode": 0, "ret": -36},
    ] + [{**base, **wire, "ts_ns": t + 10 + i} for i, (wire, _) in enumerate(NEW_KINDS)]
    decision = readme_decision(session_id=26, evidence={"history.write_then_exec_same_path": [
        {"ts_ns": t + 2, "tgid": 4242, "kind": "open", "path": to_bytes(ODD_PATH)},
        {"ts_ns": t, "tgid": 4242, "kind": "exec", "path": "/tmp/openclaw-eval/helper.sh"}]})
    return [(ANALYZER_SESSION, [session_map("opened", session_id=26, tree_id=5, parent_session_id=19)]),
            (ANALYZER_EVENT, events), (ANALYZER_DECISION, [decision]),
            (ANALYZER_SESSION, [session_map("closed", session_id=26, closed_ns=t + 99, tree_id=5,
                                            parent_session_id=19, complete=False,
                                            incomplete_reason="bootstrap")])]


def test_schema_2_traffic_becomes_the_additive_records(rig: Rig) -> None:
    """Through the real bus: the new kinds are written when this build's bus knows them (the
    kernel change adds them to bus/events.py); until then the subscriber drops them as
    ``unknown_kind``, counted -- either way nothing vanishes silently."""
    from bus.events import KINDS
    from tests.sinks.sink_maps import NEW_KINDS
    for topic, maps in schema_2_session():
        rig.analyzer.send(topic, maps)
    wait_for(lambda: lines(rig.log("sessions.log")), what="the closed snapshot")
    known = [want["type"] for wire, want in NEW_KINDS if wire["kind"] in KINDS]
    events = lines(rig.log("events.log"))
    assert [e["type"] for e in events] == ["EXECVE", "OPENAT", "OPENAT", *known]
    ex, rel, cut = events[:3]
    assert (ex["role"], ex["abspath"], ex["stdio"], ex["ld_env"]) == (
        "agent", "/tmp/openclaw-eval/helper.sh", ["inet"] * 3, {"LD_PRELOAD": "/tmp/x.so"})
    assert rel["path"] == "x.sh" and to_bytes(rel["abspath"]) == to_bytes(ODD_PATH)
    assert cut["path_truncated"] is True and len(cut["path"]) == 4094
    for record, (wire, want) in zip(events[3:], [k for k in NEW_KINDS if k[0]["kind"] in KINDS]):
        assert {k: record[k] for k in want} == want
    alert = lines(rig.log("alerts-from-env-file.log"))[0]
    refs = alert["decision"]["evidence"]["history.write_then_exec_same_path"]
    assert [r["type"] for r in refs] == ["OPENAT", "EXECVE"] and to_bytes(refs[0]["path"]) == to_bytes(ODD_PATH)
    session = lines(rig.log("sessions.log"))[0]["session"]
    assert (session["tree_id"], session["parent_session_id"], session["incomplete_reason"]) == (5, 19, "bootstrap")
    assert session["complete"] is False
    counters = wait_for(lambda: rig.hb.poll().get("sessions_written") == 1 and rig.hb.latest, what="counters")
    assert counters["hidden_events"] == 1 and counters["malformed_maps"] == 0
    assert counters["events_written"] == 3 + len(known)
    assert counters.get("unknown_kind", 0) == len(NEW_KINDS) - len(known)
    code, err = rig.close()
    assert code == 0, err
