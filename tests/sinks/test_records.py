"""Golden tests of events.log and decision records: exact key sets and values (docs/sinks.md, FIELDS)."""

from __future__ import annotations

import json

import pytest

from bus.text import to_bytes
from sinks import decision_records, records
from tests.sinks.sink_maps import (NEW_KINDS, README_ALERT_TIMESTAMP, README_ALERT_TS_NS, README_TRIGGERED_RULES,
                                   exec_event, readme_decision, roundtrip)

TS = README_ALERT_TIMESTAMP


def test_rfc3339nano_matches_go_format(chicago: None) -> None:
    assert records.rfc3339nano(README_ALERT_TS_NS) == TS
    assert records.rfc3339nano(1777761859_000000000) == "2026-05-02T17:44:19-05:00"
    assert records.rfc3339nano(1777761859_120000000) == "2026-05-02T17:44:19.12-05:00"


def test_rfc3339nano_utc_is_z(utc: None) -> None:
    assert records.rfc3339nano(README_ALERT_TS_NS) == "2026-05-02T22:44:19.027509477Z"


def test_readme_alert_record_golden(chicago: None) -> None:
    d = readme_decision()
    assert decision_records.audit_due(d) and decision_records.alert_due(d)
    assert roundtrip(decision_records.decision_record(d)) == {
        "timestamp": TS,
        "session_id": 25,
        "event": {"pid": 4242, "tid": 4242, "ppid": 4200, "uid": 1000, "type": "EXECVE",
                  "comm": "bash", "path": "/tmp/openclaw-eval/helper.sh",
                  "args": ["/tmp/openclaw-eval/helper.sh"]},
        "decision": {
            "action": "ALERT", "score": 9, "log_threshold": 4, "alert_threshold": 9,
            "triggered_rules": README_TRIGGERED_RULES,
            "rules_version": "0123456789ab"},
    }


def test_decision_thresholds_choose_audit_and_alert() -> None:
    log_only = readme_decision(score=5, action="LOG")
    assert decision_records.audit_due(log_only) and not decision_records.alert_due(log_only)
    below = readme_decision(score=3, action="IGNORE")
    assert not decision_records.audit_due(below) and not decision_records.alert_due(below)
    repeat = readme_decision(triggered_rules=[], action="IGNORE")   # original §10: nothing new, nothing logged
    assert not decision_records.audit_due(repeat) and not decision_records.alert_due(repeat)


def test_rule_expr_and_weight_omitted_when_empty(chicago: None) -> None:
    d = readme_decision(triggered_rules=[{"name": "r", "expr": "", "weight": 0}])
    assert roundtrip(decision_records.decision_record(d))["decision"]["triggered_rules"] == [{"name": "r"}]


def test_events_log_execve_golden(chicago: None) -> None:
    assert roundtrip(records.event_record(exec_event())) == {
        "timestamp": TS, "pid": 4242, "tid": 4242, "ppid": 4200, "uid": 1000, "type": "EXECVE",
        "comm": "bash", "path": "/tmp/openclaw-eval/helper.sh",
        "args": ["/tmp/openclaw-eval/helper.sh"], "session_id": 25}


def test_events_log_execve_adds_exe_when_it_differs(chicago: None) -> None:
    ev = exec_event(path="/proc/self/fd/3", exe="memfd:payload (deleted)", argv=["x"])
    rec = roundtrip(records.event_record(ev))
    assert rec["path"] == "/proc/self/fd/3" and rec["exe"] == "memfd:payload (deleted)"
    assert set(rec) == {"timestamp", "pid", "tid", "ppid", "uid", "type", "comm", "path", "args", "exe",
                        "session_id"}


def test_events_log_openat_golden(chicago: None) -> None:
    ev = {"kind": "open", "ts_ns": README_ALERT_TS_NS, "tgid": 7, "tid": 8, "ppid": 6, "uid": 0,
          "comm": "sh", "root": 1, "syscall": "openat", "path": "/tmp/openclaw-eval/helper.sh",
          "flags": 0x241, "mode": 0o644, "ret": 3, "session_id": 25, "depth": 1, "profile": "p"}
    assert roundtrip(records.event_record(ev)) == {
        "timestamp": TS, "pid": 7, "tid": 8, "ppid": 6, "uid": 0, "type": "OPENAT", "comm": "sh",
        "path": "/tmp/openclaw-eval/helper.sh", "flags": 0x241, "mode": 0o644, "session_id": 25}


def test_events_log_connect_golden(chicago: None) -> None:
    ev = {"kind": "connect", "ts_ns": README_ALERT_TS_NS, "tgid": 7, "tid": 7, "ppid": 6,
          "uid": 1000, "comm": "curl", "root": 1, "family": 2, "addr": "127.0.0.1", "port": 18000,
          "ret": -115, "session_id": 25}
    assert roundtrip(records.event_record(ev)) == {
        "timestamp": TS, "pid": 7, "tid": 7, "ppid": 6, "uid": 1000, "type": "CONNECT",
        "comm": "curl", "addr": "127.0.0.1", "port": 18000, "session_id": 25}


def test_events_log_exit_has_common_fields_only(chicago: None) -> None:
    ev = {"kind": "exit", "ts_ns": README_ALERT_TS_NS, "tgid": 7, "tid": 7, "ppid": 6, "uid": 1,
          "comm": "curl", "root": 1, "exit_code": 0, "session_id": 25}
    assert roundtrip(records.event_record(ev)) == {
        "timestamp": TS, "pid": 7, "tid": 7, "ppid": 6, "uid": 1, "type": "EXIT", "comm": "curl",
        "session_id": 25}


def test_kinds_the_original_never_logged_give_no_record() -> None:
    assert records.event_record({"kind": "fork", "ts_ns": 1, "tgid": 2, "child_tgid": 3}) is None
    assert records.event_record({"kind": "loss", "ts_ns": 1, "count": 3, "where": "kernel"}) is None


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


def test_malformed_decision_raises() -> None:
    with pytest.raises(records.RecordError, match="'score' is missing"):
        decision_records.audit_due(readme_decision(score=None))
    with pytest.raises(records.RecordError, match="decision event is NoneType"):
        decision_records.decision_record(readme_decision(event=None))


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


# ---------------------------------------------------------------------- schema 2 (additive)

COMMON = {"ts_ns": README_ALERT_TS_NS, "tgid": 7, "tid": 7, "ppid": 6, "uid": 1000, "comm": "sh",
          "root": 1, "session_id": 25, "tree_id": 3, "shard": 3, "depth": 1}
HEAD = {"timestamp": TS, "pid": 7, "tid": 7, "ppid": 6, "uid": 1000}


def test_execve_with_schema_2_facts(chicago: None) -> None:
    ev = exec_event(path="x.sh", abspath="/tmp/d/x.sh", path_truncated=False, role="wrapper",
                    ino=12, dev=2049, euid=0, prev_euid=1000, prev_cap_eff=0, env_truncated=True,
                    stdio=[{"type": "inet", "family": 2, "addr": "127.0.0.1", "port": 4444},
                           {"type": "pipe", "ino": 77}, {"type": "tty"}],
                    parent_stdio=["inet", "inet", "inet"], ld_env={"LD_PRELOAD": b"/tmp/\xffx.so"},
                    argv=["x.sh"], exe="x.sh")
    rec = roundtrip(records.event_record(ev))
    assert rec == {"timestamp": TS, "pid": 4242, "tid": 4242, "ppid": 4200, "uid": 1000, "type": "EXECVE",
                   "comm": "bash", "path": "x.sh", "args": ["x.sh"], "role": "wrapper",
                   "abspath": "/tmp/d/x.sh", "stdio": ["inet", "pipe", "tty"],
                   "parent_stdio": ["inet", "inet", "inet"], "ld_env": {"LD_PRELOAD": "/tmp/\udcffx.so"},
                   "env_truncated": True, "euid": 0, "prev_euid": 1000, "session_id": 25}
    assert list(rec)[:10] == ["timestamp", "pid", "tid", "ppid", "uid", "type", "comm", "path", "args", "role"]


def test_execve_omits_absent_false_and_empty_facts(chicago: None) -> None:
    rec = records.event_record(exec_event(ld_env={}, path_truncated=False, prev_euid=None, abspath=None))
    assert set(rec) == {"timestamp", "pid", "tid", "ppid", "uid", "type", "comm", "path", "args", "session_id"}


def test_openat_with_abspath_truncation_and_proc_target(chicago: None) -> None:
    ev = {**COMMON, "kind": "open", "syscall": "openat", "path": "mem", "abspath": "/proc/99/mem",
          "flags": 0, "mode": 0, "ret": 3, "target_tgid": 99, "target_in_tree": False, "ino": 5, "dev": 3}
    assert roundtrip(records.event_record(ev)) == {
        **HEAD, "type": "OPENAT", "comm": "sh", "path": "mem", "flags": 0, "mode": 0,
        "abspath": "/proc/99/mem", "target_tgid": 99, "target_in_tree": False, "session_id": 25}
    cut = {**COMMON, "kind": "open", "path": "/tmp/" + "a" * 4089, "flags": 0, "mode": 0,
           "path_truncated": True, "abspath": ""}
    rec = records.event_record(cut)
    assert rec["path_truncated"] is True and rec["abspath"] == ""   # "": relative, base unresolved


@pytest.mark.parametrize("wire,want", NEW_KINDS, ids=[w["kind"] for w, _ in NEW_KINDS])
def test_events_log_schema_2_kinds_golden(chicago: None, wire: dict, want: dict) -> None:
    """The schema-2 kinds (fields the kernel adds beyond the bus contract, e.g. ``egid``, are not written)."""
    rec = roundtrip(records.event_record({**COMMON, **wire}))
    assert rec == {**HEAD, "type": want["type"], "comm": "sh", **want, "session_id": 25}
    assert list(rec)[:7] == ["timestamp", "pid", "tid", "ppid", "uid", "type", "comm"]
    assert records.event_line({**COMMON, **wire}) == records.encode_line(records.event_record({**COMMON, **wire}))
    with_role = roundtrip(records.event_record({**COMMON, **wire, "role": "agent"}))
    assert with_role["role"] == "agent"


def test_every_contract_kind_has_a_type_name() -> None:
    contract = ["chmod", "unlink", "rename", "truncate", "memfd", "ptrace", "vm_read", "send", "bind",
                "listen", "socket", "setid", "capset"]
    assert [records.TYPE_NAMES[k] for k in contract] == [
        "CHMOD", "UNLINK", "RENAME", "TRUNCATE", "MEMFD", "PTRACE", "VM_READ", "SEND", "BIND", "LISTEN",
        "SOCKET", "SETID", "CAPSET"]
    assert {w["kind"] for w, _ in NEW_KINDS} == set(contract)


def test_a_dns_send_never_carries_a_name(chicago: None) -> None:
    """Only what the event carries: a payload or name field a publisher added is not written."""
    wire = {**COMMON, **NEW_KINDS[7][0], "dns_qname": "c2VjcmV0.evil.example", "payload": b"\x00\x01secret"}
    line = records.event_line(wire)
    assert b"evil" not in line and b"secret" not in line


def test_new_kinds_with_missing_fields_write_empty_values(chicago: None) -> None:
    rec = records.event_record({**COMMON, "kind": "capset"})
    assert (rec["syscall"], rec["ret"], rec["effective"]) == ("", 0, "0x0")
    rec = records.event_record({**COMMON, "kind": "setid"})
    assert rec["ids"] == [] and rec["euid"] == 0


def test_decision_evidence_golden(chicago: None) -> None:
    d = readme_decision(evidence={
        "history.write_then_exec_same_path": [
            {"ts_ns": README_ALERT_TS_NS - 2_000_000_000, "tgid": 4200, "kind": "open",
             "path": b"/tmp/openclaw-eval/\xffhelper.sh"},
            {"ts_ns": README_ALERT_TS_NS, "tgid": 4242, "kind": "exec", "path": "/tmp/openclaw-eval/helper.sh"}],
        "history.credential_then_network": [
            {"ts_ns": README_ALERT_TS_NS, "tgid": 9, "kind": "send", "addr": "[::1]:53"},
            {"ts_ns": README_ALERT_TS_NS, "tgid": 9, "kind": "connect", "addr": "127.0.0.1:443"}]})
    rec = roundtrip(decision_records.decision_record(d))
    assert list(rec["decision"]) == ["action", "score", "log_threshold", "alert_threshold",
                                     "triggered_rules", "rules_version", "evidence"]
    assert rec["decision"]["evidence"] == {
        "history.write_then_exec_same_path": [
            {"timestamp": "2026-05-02T17:44:17.027509477-05:00", "pid": 4200, "type": "OPENAT",
             "path": "/tmp/openclaw-eval/\udcffhelper.sh"},
            {"timestamp": TS, "pid": 4242, "type": "EXECVE", "path": "/tmp/openclaw-eval/helper.sh"}],
        "history.credential_then_network": [
            {"timestamp": TS, "pid": 9, "type": "SEND", "addr": "[::1]:53"},
            {"timestamp": TS, "pid": 9, "type": "CONNECT", "addr": "127.0.0.1:443"}]}


def test_decision_evidence_is_bounded_and_malformed_parts_are_left_out(chicago: None) -> None:
    ref = {"ts_ns": README_ALERT_TS_NS, "tgid": 1, "kind": "exec", "path": "/x"}
    evidence = {f"history.f{i}": [ref] * 6 for i in range(decision_records.MAX_EVIDENCE_FIELDS + 2)}
    evidence["history.f0"] = [ref, "junk", {"tgid": 1}, {**ref, "ts_ns": 10**40}, ref]
    rec = decision_records.decision_record(readme_decision(evidence=evidence))["decision"]
    assert len(rec["evidence"]) == decision_records.MAX_EVIDENCE_FIELDS
    assert len(rec["evidence"]["history.f0"]) == 2 and len(rec["evidence"]["history.f1"]) == decision_records.MAX_EVIDENCE_REFS
    # f0: 3 malformed; f1..f15: 2 over the bound each; f16, f17: 6 each beyond the field bound
    assert rec["evidence_omitted"] == 3 + 15 * 2 + 2 * 6
    assert "evidence" not in decision_records.decision_record(readme_decision())["decision"]
    odd = decision_records.decision_record(readme_decision(evidence=["not", "a", "map"]))["decision"]
    assert "evidence" not in odd and odd["evidence_omitted"] == 1 and odd["action"] == "ALERT"


def test_decision_event_carries_the_additive_fields(chicago: None) -> None:
    d = readme_decision(event=exec_event(role="agent", abspath="/tmp/openclaw-eval/helper.sh"))
    ev = roundtrip(decision_records.decision_record(d))["event"]
    assert ev["role"] == "agent" and ev["abspath"] == "/tmp/openclaw-eval/helper.sh"


def test_evidence_references_name_a_path_an_address_a_target_or_a_detail(chicago: None) -> None:
    """The analyzer's reference shapes: path (exec, open, chmod, memfd:<name>), addr (connect,
    send, bind, listen), target (ptrace, vm_read: a pid), detail (socket, setid, capset)."""
    def ref(kind: str, **what: object) -> dict:
        return {"ts_ns": README_ALERT_TS_NS, "tgid": 3, "kind": kind, **what}
    refs = [ref("memfd", path="memfd:payload"), ref("listen", addr="0.0.0.0:4444"),
            ref("ptrace", target=777), ref("vm_read", target="self"), ref("socket", detail="17/3/768"),
            ref("capset", detail=b"0x\xff"), ref("exit")]
    got = decision_records.evidence_record({"history.x": refs[:4], "history.y": refs[4:]})[0]
    base = {"timestamp": TS, "pid": 3}
    assert got == {"history.x": [{**base, "type": "MEMFD", "path": "memfd:payload"},
                                 {**base, "type": "LISTEN", "addr": "0.0.0.0:4444"},
                                 {**base, "type": "PTRACE", "target": 777},
                                 {**base, "type": "VM_READ", "target": "self"}],
                   "history.y": [{**base, "type": "SOCKET", "detail": "17/3/768"},
                                 {**base, "type": "CAPSET", "detail": "0x\udcff"},
                                 {**base, "type": "EXIT"}]}
    bad = decision_records.evidence_record({"history.x": [ref("ptrace", target=1.5)]})
    assert bad == ({}, 1)
