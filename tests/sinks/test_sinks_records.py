"""Golden tests: every record type of casa-original.md §11, exact key sets and values."""

from __future__ import annotations

import json

import pytest

from bus.text import to_bytes
from sinks import records
from tests.sinks.sink_maps import README_ALERT_TS_NS, exec_event, readme_decision, session_map

TS = "2026-05-02T17:44:19.027509477-05:00"


def roundtrip(rec: dict) -> dict:
    line = records.encode_line(rec)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    return json.loads(line)


def test_rfc3339nano_matches_go_format(chicago: None) -> None:
    assert records.rfc3339nano(README_ALERT_TS_NS) == TS
    assert records.rfc3339nano(1777761859_000000000) == "2026-05-02T17:44:19-05:00"
    assert records.rfc3339nano(1777761859_120000000) == "2026-05-02T17:44:19.12-05:00"


def test_rfc3339nano_utc_is_z(monkeypatch: pytest.MonkeyPatch) -> None:
    import time
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        assert records.rfc3339nano(README_ALERT_TS_NS) == "2026-05-02T22:44:19.027509477Z"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_readme_alert_record_golden(chicago: None) -> None:
    d = readme_decision()
    assert records.audit_due(d) and records.alert_due(d)
    assert roundtrip(records.decision_record(d)) == {
        "timestamp": TS,
        "session_id": 25,
        "event": {"pid": 4242, "tid": 4242, "ppid": 4200, "uid": 1000, "type": "EXECVE",
                  "comm": "bash", "path": "/tmp/openclaw-eval/helper.sh",
                  "args": ["/tmp/openclaw-eval/helper.sh"]},
        "decision": {
            "action": "ALERT", "score": 9, "log_threshold": 4, "alert_threshold": 9,
            "triggered_rules": [
                {"name": "write_then_exec_same_path", "expr": "history.write_then_exec_same_path",
                 "weight": 5},
                {"name": "write_then_exec_from_suspicious_path",
                 "expr": "history.write_then_exec_same_path && execution.suspicious_path_exec",
                 "weight": 4}],
            "rules_version": "0123456789ab"},
    }


def test_decision_thresholds_choose_audit_and_alert() -> None:
    log_only = readme_decision(score=5, action="LOG")
    assert records.audit_due(log_only) and not records.alert_due(log_only)
    below = readme_decision(score=3, action="IGNORE")
    assert not records.audit_due(below) and not records.alert_due(below)
    repeat = readme_decision(triggered_rules=[], action="IGNORE")   # §10: nothing new, nothing logged
    assert not records.audit_due(repeat) and not records.alert_due(repeat)


def test_rule_expr_and_weight_omitted_when_empty(chicago: None) -> None:
    d = readme_decision(triggered_rules=[{"name": "r", "expr": "", "weight": 0}])
    assert roundtrip(records.decision_record(d))["decision"]["triggered_rules"] == [{"name": "r"}]


def test_events_log_execve_golden(chicago: None) -> None:
    assert roundtrip(records.event_record(exec_event())) == {
        "timestamp": TS, "pid": 4242, "tid": 4242, "ppid": 4200, "uid": 1000, "type": "EXECVE",
        "comm": "bash", "path": "/tmp/openclaw-eval/helper.sh",
        "args": ["/tmp/openclaw-eval/helper.sh"]}


def test_events_log_execve_adds_exe_when_it_differs(chicago: None) -> None:
    ev = exec_event(path="/proc/self/fd/3", exe="memfd:payload (deleted)", argv=["x"])
    rec = roundtrip(records.event_record(ev))
    assert rec["path"] == "/proc/self/fd/3" and rec["exe"] == "memfd:payload (deleted)"
    assert set(rec) == {"timestamp", "pid", "tid", "ppid", "uid", "type", "comm", "path", "args", "exe"}


def test_events_log_openat_golden(chicago: None) -> None:
    ev = {"kind": "open", "ts_ns": README_ALERT_TS_NS, "tgid": 7, "tid": 8, "ppid": 6, "uid": 0,
          "comm": "sh", "root": 1, "syscall": "openat", "path": "/tmp/openclaw-eval/helper.sh",
          "flags": 0x241, "mode": 0o644, "ret": 3, "session_id": 25, "depth": 1, "profile": "p"}
    assert roundtrip(records.event_record(ev)) == {
        "timestamp": TS, "pid": 7, "tid": 8, "ppid": 6, "uid": 0, "type": "OPENAT", "comm": "sh",
        "path": "/tmp/openclaw-eval/helper.sh", "flags": 0x241, "mode": 0o644}


def test_events_log_connect_golden(chicago: None) -> None:
    ev = {"kind": "connect", "ts_ns": README_ALERT_TS_NS, "tgid": 7, "tid": 7, "ppid": 6,
          "uid": 1000, "comm": "curl", "root": 1, "family": 2, "addr": "127.0.0.1", "port": 18000,
          "ret": -115, "session_id": 25}
    assert roundtrip(records.event_record(ev)) == {
        "timestamp": TS, "pid": 7, "tid": 7, "ppid": 6, "uid": 1000, "type": "CONNECT",
        "comm": "curl", "addr": "127.0.0.1", "port": 18000}


def test_events_log_exit_has_common_fields_only(chicago: None) -> None:
    ev = {"kind": "exit", "ts_ns": README_ALERT_TS_NS, "tgid": 7, "tid": 7, "ppid": 6, "uid": 1,
          "comm": "curl", "root": 1, "exit_code": 0, "session_id": 25}
    assert roundtrip(records.event_record(ev)) == {
        "timestamp": TS, "pid": 7, "tid": 7, "ppid": 6, "uid": 1, "type": "EXIT", "comm": "curl"}


def test_kinds_the_original_never_logged_give_no_record() -> None:
    assert records.event_record({"kind": "fork", "ts_ns": 1, "tgid": 2, "child_tgid": 3}) is None
    assert records.event_record({"kind": "loss", "ts_ns": 1, "count": 3, "where": "kernel"}) is None


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
    s = session_map("closed", closed_ns=README_ALERT_TS_NS + 2_000_000_000, recent_events=recent)
    rec = roundtrip(records.session_record(s, README_ALERT_TS_NS + 3_000_000_000))
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
            "complete": True, "lost_events": 0},
    }


@pytest.mark.parametrize("state,reason", [("flushed", "periodic_flush"), ("shutdown", "shutdown")])
def test_sessions_log_open_snapshots_omit_closed_at(chicago: None, state: str, reason: str) -> None:
    rec = roundtrip(records.session_record(session_map(state), README_ALERT_TS_NS))
    assert rec["reason"] == reason
    assert set(rec) == {"timestamp", "session_id", "reason", "session"}
    assert set(rec["session"]) == {"created_at", "updated_at", "recent_events", "complete", "lost_events"}


def test_sessions_log_opened_writes_nothing() -> None:
    assert records.session_record(session_map("opened"), 1) is None


def test_sessions_log_incomplete_from_analyzer_or_sink() -> None:
    lossy = records.session_record(session_map("closed", complete=False, lost_events=12), 1)
    assert lossy["session"]["complete"] is False and lossy["session"]["lost_events"] == 12
    sink_lost = records.session_record(session_map("closed"), 1, sink_saw_loss=True)
    assert sink_lost["session"]["complete"] is False


def test_sessions_log_accepts_recent_events_already_in_original_shape() -> None:
    s = session_map("flushed", recent_events=[{"timestamp": "T", "type": "EXECVE", "pid": 3,
                                                "path": "/bin/true"}])
    assert records.session_record(s, 1)["session"]["recent_events"] == [
        {"timestamp": "T", "type": "EXECVE", "pid": 3, "path": "/bin/true"}]


def test_non_utf8_and_newline_paths_escape_on_one_line_and_roundtrip() -> None:
    raw = b"/tmp/odd\xff\xfe\nname\r\twith \xe2\x80\xa8 sep"
    ev = exec_event(path=raw, exe=raw, argv=[raw, "caf\u00e9"], comm=b"b\xffsh")
    line = records.encode_line(records.event_record(ev))
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    line.decode("utf-8")                                  # valid UTF-8 throughout
    assert b"\\udcff\\udcfe\\n" in line                   # escaped, not raw
    rec = json.loads(line)
    assert to_bytes(rec["path"]) == raw and to_bytes(rec["args"][0]) == raw
    assert rec["args"][1] == "caf\u00e9" and to_bytes(rec["comm"]) == b"b\xffsh"
    assert "exe" not in rec                               # same as path


def test_very_long_path_is_kept_whole() -> None:
    path = "/tmp/" + "x" * 100_000
    assert json.loads(records.encode_line(records.event_record(exec_event(path=path))))["path"] == path


@pytest.mark.parametrize("bad,reason", [
    ({"kind": "exec", "tgid": 1}, "missing field 'ts_ns'"),
    ({"kind": "exec", "ts_ns": 1, "tgid": "one"}, "field 'tgid' is str"),
    ({"kind": "exec", "ts_ns": 1, "tgid": 1, "argv": "x"}, "field 'argv' is str"),
    ({"kind": "exec", "ts_ns": 1, "tgid": 1, "path": 5}, "expected text, got int"),
    ("not a map", "event is str, not a map"),
])
def test_malformed_events_raise_clear_errors(bad: object, reason: str) -> None:
    with pytest.raises(records.RecordError, match=reason):
        records.event_record(bad)  # type: ignore[arg-type]


def test_out_of_range_timestamp_is_a_record_error() -> None:
    with pytest.raises(records.RecordError, match="out of range"):
        records.event_record(exec_event(ts_ns=10**40))


def test_malformed_decision_and_session_raise() -> None:
    with pytest.raises(records.RecordError, match="'score' is missing"):
        records.audit_due(readme_decision(score=None))
    with pytest.raises(records.RecordError, match="decision event is NoneType"):
        records.decision_record(readme_decision(event=None))
    with pytest.raises(records.RecordError, match="unknown session state 'weird'"):
        records.session_record(session_map("weird"), 1)


def test_rfc3339nano_remembered_second_gives_the_same_text(chicago: None) -> None:
    """The per-second memo never changes a timestamp: same second, next second, back, fractions."""
    import random
    import time as _time
    rng = random.Random(3)
    base = 1777761859_000000000
    stamps = [base + rng.choice([0, 1, 999_999_999, 10**9, 2 * 10**9, -10**9]) + rng.randint(0, 3)
              for _ in range(2000)]
    for ts in stamps:
        sec, ns = divmod(ts, 10**9)
        local = _time.localtime(sec)
        frac = f".{ns:09d}".rstrip("0") if ns else ""
        assert records.rfc3339nano(ts) == _time.strftime("%Y-%m-%dT%H:%M:%S", local) + frac + "-05:00"
