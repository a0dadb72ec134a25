"""Golden tests of sessions.log records (sinks/session_records.py; docs/sinks.md, FIELDS)."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

from sinks import records
from sinks.session_records import session_record
from tests.sinks.sink_maps import README_ALERT_TIMESTAMP, README_ALERT_TS_NS, exec_event, roundtrip, session_map

TS = README_ALERT_TIMESTAMP


def test_sessions_log_closed_golden(chicago: None) -> None:
    recent = [
        {"kind": "open", "ts_ns": README_ALERT_TS_NS, "tgid": 7, "path": "/tmp/a", "flags": 0x241,
         "mode": 0o644},
        {"kind": "open", "ts_ns": README_ALERT_TS_NS, "tgid": 7, "path": "/etc/os-release",
         "flags": 0, "mode": 0},
        exec_event(),
        {"kind": "connect", "ts_ns": README_ALERT_TS_NS, "tgid": 9, "addr": "1.2.3.4", "port": 443},
        {"kind": "exit", "ts_ns": README_ALERT_TS_NS, "tgid": 9},
    ]
    s = session_map("closed", closed_ns=README_ALERT_TS_NS + 2_000_000_000, recent_events=recent,
                    tree_id=24, parent_session_id=19)
    rec = roundtrip(session_record(s, README_ALERT_TS_NS + 3_000_000_000))
    assert rec == {
        "timestamp": "2026-05-02T17:44:22.027509477-05:00", "session_id": 25,
        "reason": "session_closed",
        "session": {
            "created_at": "2026-05-02T17:44:17.027509477-05:00", "updated_at": TS,
            "closed_at": "2026-05-02T17:44:21.027509477-05:00",
            "recent_events": [
                {"timestamp": TS, "type": "OPENAT", "pid": 7, "path": "/tmp/a", "flags": 0x241,
                 "mode": 0o644},
                {"timestamp": TS, "type": "OPENAT", "pid": 7, "path": "/etc/os-release"},
                {"timestamp": TS, "type": "EXECVE", "pid": 4242, "path": "/tmp/openclaw-eval/helper.sh"},
                {"timestamp": TS, "type": "CONNECT", "pid": 9, "addr": "1.2.3.4", "port": 443},
                {"timestamp": TS, "type": "EXIT", "pid": 9}],
            "complete": True, "lost_events": 0,
            "profile": "openclaw", "leader_tgid": 4100, "tree_id": 24, "parent_session_id": 19,
            "score": 9, "action": "ALERT", "triggered_rules": ["write_then_exec_same_path"]},
    }
    assert list(rec["session"])[:6] == ["created_at", "updated_at", "closed_at", "recent_events",
                                        "complete", "lost_events"]      # the original's first


@pytest.mark.parametrize("state,reason", [("flushed", "periodic_flush"), ("shutdown", "shutdown")])
def test_sessions_log_open_snapshots_omit_closed_at(chicago: None, state: str, reason: str) -> None:
    rec = roundtrip(session_record(session_map(state), README_ALERT_TS_NS))
    assert rec["reason"] == reason
    assert set(rec) == {"timestamp", "session_id", "reason", "session"}
    assert set(rec["session"]) == {"created_at", "updated_at", "recent_events", "complete", "lost_events",
                                   "profile", "leader_tgid", "score", "action", "triggered_rules"}


def test_lifecycle_fields_are_written_only_when_present(chicago: None) -> None:
    bare = {k: v for k, v in session_map("closed").items()
            if k not in ("profile", "leader_tgid", "score", "action", "triggered_rules")}
    assert set(session_record(bare, 1)["session"]) == {"created_at", "updated_at", "recent_events",
                                                       "complete", "lost_events"}
    none = session_record(session_map("closed", parent_session_id=None, incomplete_reason="", tree_id=3), 1)
    assert "parent_session_id" not in none["session"] and "incomplete_reason" not in none["session"]
    assert none["session"]["tree_id"] == 3
    lossy = session_record(session_map("closed", complete=False, incomplete_reason="bootstrap"), 1)
    assert lossy["session"]["complete"] is False and lossy["session"]["incomplete_reason"] == "bootstrap"
    with pytest.raises(records.RecordError, match="field 'tree_id' is str"):
        session_record(session_map("closed", tree_id="7"), 1)


def test_sessions_log_opened_writes_nothing() -> None:
    assert session_record(session_map("opened"), 1) is None


def test_sessions_log_incomplete_from_analyzer_or_sink() -> None:
    lossy = session_record(session_map("closed", complete=False, lost_events=12), 1)
    assert lossy["session"]["complete"] is False and lossy["session"]["lost_events"] == 12
    sink_lost = session_record(session_map("closed"), 1, sink_saw_loss=True)
    assert sink_lost["session"]["complete"] is False


def test_sessions_log_accepts_recent_events_already_in_original_shape() -> None:
    s = session_map("flushed", recent_events=[{"timestamp": "T", "type": "EXECVE", "pid": 3,
                                                "path": "/bin/true"}])
    assert session_record(s, 1)["session"]["recent_events"] == [
        {"timestamp": "T", "type": "EXECVE", "pid": 3, "path": "/bin/true"}]


def test_recent_events_of_the_new_kinds(chicago: None) -> None:
    """What the analyzer keeps of them (analyzer/session_state.py RecentEvent.to_map)."""
    def ev(kind: str, **kw: Any) -> dict[str, Any]:
        return {"kind": kind, "ts_ns": README_ALERT_TS_NS, "tgid": 5, **kw}
    recent = [ev("chmod", path="/tmp/x.sh"), ev("unlink", path=b"/var/log/\xff"), ev("rename", path="/h/.bashrc"),
              ev("truncate", path=""), ev("send", addr="127.0.0.1", port=53), ev("bind"), ev("memfd"),
              ev("ptrace"), ev("memfd", path="memfd:x"), ev("newkind", path="/x")]
    out = session_record(session_map("closed", recent_events=recent), 1)["session"]["recent_events"]
    base = {"timestamp": TS, "pid": 5}
    assert out == [{**base, "type": "CHMOD", "path": "/tmp/x.sh"},
                   {**base, "type": "UNLINK", "path": "/var/log/\udcff"},
                   {**base, "type": "RENAME", "path": "/h/.bashrc"}, {**base, "type": "TRUNCATE"},
                   {**base, "type": "SEND", "addr": "127.0.0.1", "port": 53}, {**base, "type": "BIND"},
                   {**base, "type": "MEMFD"}, {**base, "type": "PTRACE"},
                   {**base, "type": "MEMFD", "path": "memfd:x"}, {**base, "type": "OTHER"}]


def test_recent_events_odd_and_missing_fields(chicago: None) -> None:
    recent = [{"kind": "open", "ts_ns": 1, "tgid": 2, "path": b"/tmp/\xff", "flags": 0},
              {"kind": "exec", "ts_ns": 1, "tgid": 2},                       # no path: ""
              {"kind": "connect", "ts_ns": 1, "tgid": 2, "addr": "::1"},     # no port: 0
              {"kind": "fork", "ts_ns": 1, "tgid": 2},
              MappingProxyType({"kind": "open", "ts_ns": 1, "tgid": 2, "path": "/x", "mode": 1})]
    out = session_record(session_map("closed", recent_events=recent), 1)["session"]["recent_events"]
    assert [{k: v for k, v in e.items() if k != "timestamp"} for e in out] == [
        {"type": "OPENAT", "pid": 2, "path": "/tmp/\udcff"}, {"type": "EXECVE", "pid": 2, "path": ""},
        {"type": "CONNECT", "pid": 2, "addr": "::1", "port": 0}, {"type": "OTHER", "pid": 2},
        {"type": "OPENAT", "pid": 2, "path": "/x", "mode": 1}]


@pytest.mark.parametrize("bad,reason", [
    ({"kind": "open", "ts_ns": 1, "tgid": 2, "flags": True}, "field 'flags' is bool"),
    ({"kind": "exec", "ts_ns": 1, "tgid": 2, "path": 5}, "expected text, got int"),
    ({"kind": "exec", "ts_ns": "1", "tgid": 2}, "field 'ts_ns' is str"),
    ("x", "recent event is str"),
])
def test_malformed_recent_events_raise(bad: Any, reason: str) -> None:
    with pytest.raises(records.RecordError, match=reason):
        session_record(session_map("flushed", recent_events=[bad]), README_ALERT_TS_NS)


def test_unknown_state_raises() -> None:
    with pytest.raises(records.RecordError, match="unknown session state 'weird'"):
        session_record(session_map("weird"), 1)


def test_the_verdict_so_far_is_written_when_the_map_carries_it(chicago: None) -> None:
    """score, action and the matched rules' names: what ``casa sessions`` lists."""
    rec = session_record(session_map("flushed", score=4, action="LOG", triggered_rules=["a", b"\xffb"]), 1)
    assert (rec["session"]["score"], rec["session"]["action"]) == (4, "LOG")
    assert rec["session"]["triggered_rules"] == ["a", "\udcffb"]
    with pytest.raises(records.RecordError, match="'triggered_rules' is not a list"):
        session_record(session_map("closed", triggered_rules="a"), 1)
