"""The runner's pure parts: OpenClaw's JSON output, the turn command, collecting a case by session
(evaluation/cases.py), the machine's resolvers (evaluation/network.py) and the rule packs
(evaluation/packs.py)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

import evaluation.cases as cases
import evaluation.packs as packs
from evaluation.cases import BusRecorder, Received, collect, openclaw_turn_argv, parse_turn
from evaluation.network import machine_resolvers
from evaluation.toolchain import CHECKOUT, Toolchain


def test_parse_turn_reads_both_output_shapes():
    meta = {"toolSummary": {"calls": 3, "tools": ["exec"]}, "finalAssistantVisibleText": "done"}
    assert parse_turn(json.dumps({"result": {"payloads": [], "meta": meta}}).encode()) == (3, "done")   # gateway
    assert parse_turn(json.dumps({"payloads": [{"text": "x"}], "meta": meta}).encode()) == (3, "done")  # --local
    assert parse_turn(b"not json") == (0, "")


def test_turn_argv_has_a_fresh_session_and_local_only_in_local_mode():
    tc = Toolchain(Path("/n/bin"), Path("/n/.bin/openclaw"))
    gw = openclaw_turn_argv(tc, "gateway", "hi there", "eval-1")
    assert gw == ["/n/.bin/openclaw", "agent", "--agent", "main", "--session-id", "eval-1", "--json",
                  "--message", "hi there"]
    assert openclaw_turn_argv(tc, "local", "hi", "eval-2")[:3] == ["/n/.bin/openclaw", "agent", "--local"]


def _recorder(t0: int) -> BusRecorder:
    rec = BusRecorder(Path("/nonexistent"))
    rec.events += [Received(t0 + 5, {"session_id": 4, "kind": "exec", "ts_ns": t0 + 1, "path": "/bin/x"}),
                   Received(t0 + 5, {"session_id": 3, "kind": "open", "ts_ns": t0 - 10})]   # before the turn
    rec.decisions.append(Received(t0 + 9, {"session_id": 4, "action": "LOG", "score": 4,
                                           "triggered_rules": [], "event": {"ts_ns": t0 + 1}}))
    return rec


def test_collect_waits_for_the_close_record_of_the_turns_session(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(cases, "SETTLE_S", 0.1)
    t0 = time.time_ns()
    rec = _recorder(t0)

    def close_later() -> None:
        time.sleep(0.4)
        with rec.lock:
            rec.sessions.append(Received(time.time_ns(), {"session_id": 4, "state": "closed", "score": 4}))
    threading.Thread(target=close_later).start()
    started = time.monotonic()
    r = collect(rec, "X", "gateway", t0, t0 + 100, 0, 1, "ok")
    assert time.monotonic() - started >= 0.35
    assert (r.session_ids, r.complete, r.event_count, r.exec_paths) == ([4], True, 1, ["/bin/x"])
    assert [d["session_id"] for d in r.decisions] == [4] and r.sessions[0]["state"] == "closed"


def test_collect_gives_up_and_says_incomplete_when_no_close_arrives(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(cases, "SETTLE_S", 0.1)
    monkeypatch.setattr(cases, "CLOSE_TIMEOUT_S", 0.3)
    t0 = time.time_ns()
    r = collect(_recorder(t0), "X", "gateway", t0, t0 + 100, 0, 1, "ok")
    assert (r.session_ids, r.complete) == ([4], False)


def test_collect_with_no_session_returns_after_settling(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(cases, "SETTLE_S", 0.2)
    t0 = time.time_ns()
    started = time.monotonic()
    r = collect(BusRecorder(Path("/nonexistent")), "X", "local", t0, t0 + 100, 0, 0, "")
    assert 0.2 <= time.monotonic() - started < 2
    assert (r.session_ids, r.complete, r.decisions) == ([], True, [])


def test_collect_leaves_out_sessions_of_other_users(monkeypatch: pytest.MonkeyPatch):
    """Another OpenClaw run on the machine (here as root) during the turn is not part of the case."""
    monkeypatch.setattr(cases, "SETTLE_S", 0.1)
    t0 = time.time_ns()
    rec = BusRecorder(Path("/nonexistent"))
    rec.events += [Received(t0, {"session_id": 4, "kind": "exec", "ts_ns": t0 + 1, "uid": 995, "path": "/bin/x"}),
                   Received(t0, {"session_id": 5, "kind": "exec", "ts_ns": t0 + 2, "uid": 0, "path": "/bin/y"})]
    rec.sessions += [Received(t0, {"session_id": 4, "state": "closed"}), Received(t0, {"session_id": 5, "state": "opened"})]
    r = collect(rec, "X", "local", t0, t0 + 100, 0, 1, "ok", uid=995)
    assert (r.session_ids, r.complete, r.exec_paths) == ([4], True, ["/bin/x"])


def test_machine_resolvers_are_the_non_loopback_nameservers(tmp_path: Path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nnameserver 127.0.0.53\nnameserver 10.255.255.53\nsearch x\nnameserver ::1\n")
    assert machine_resolvers(conf) == ["10.255.255.53"]
    assert machine_resolvers(tmp_path / "missing") == []


def test_default_pack_column_is_rules_json_with_the_eval_analysis_values_in_indexed_mode(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The default column runs rules.json's rules (not the original twelve) with the evaluation's
    sensitive files and stand-in ports, in rules.json's history mode; the original column runs
    config/rules.eval.json untouched. Both get the machine's resolvers, and nothing else changes."""
    from policy import load_policy
    monkeypatch.setattr(packs, "machine_resolvers", lambda: ["10.9.9.53"])
    shipped = json.loads((CHECKOUT / "rules.json").read_text())
    evaluation = json.loads((CHECKOUT / "config" / "rules.eval.json").read_text())
    written = json.loads(packs.eval_rules(tmp_path / "default.json", pack="default").read_text())
    assert written["rules"] == shipped["rules"] and written["thresholds"] == shipped["thresholds"]
    for key, value in evaluation["analysis"].items():
        if key == "ignored_connect_ips":
            assert written["analysis"][key] == value + ["10.9.9.53"]
        elif key != "history_mode":
            assert written["analysis"][key] == value, key
    assert "/srv/casa-eval/fake_fs/" in written["analysis"]["sensitive_path_prefixes"]
    assert written["analysis"]["allowed_loopback_ports"] == [18000, 18081, 18082]
    assert written["analysis"].get("history_mode") == shipped["analysis"].get("history_mode")
    assert load_policy(tmp_path / "default.json").analysis.history_mode == "indexed"
    assert len(load_policy(tmp_path / "default.json").rules) == len(shipped["rules"]) > 12

    original = json.loads(packs.eval_rules(tmp_path / "original.json", pack="original").read_text())
    evaluation["analysis"]["ignored_connect_ips"] = evaluation["analysis"]["ignored_connect_ips"] + ["10.9.9.53"]
    assert original == evaluation
    assert load_policy(tmp_path / "original.json").analysis.history_mode == "original"


def test_default_pack_overlay_reads_both_files_at_run_time(tmp_path: Path):
    """No second copy: a changed rules.json or evaluation value shows up in the composed pack."""
    default, evaluation = tmp_path / "rules.json", tmp_path / "eval.json"
    default.write_text(json.dumps({"analysis": {"history_mode": "indexed", "burst_exec_threshold": 5, "extra": 1},
                                   "thresholds": {"log": 4, "alert": 9}, "rules": [{"name": "r"}]}))
    evaluation.write_text(json.dumps({"analysis": {"history_mode": "original", "burst_exec_threshold": 3},
                                      "rules": [{"name": "ignored"}]}))
    rules = packs.default_pack_rules(default, evaluation)
    assert rules == {"analysis": {"history_mode": "indexed", "burst_exec_threshold": 3, "extra": 1},
                     "thresholds": {"log": 4, "alert": 9}, "rules": [{"name": "r"}]}
    with pytest.raises(ValueError, match="unknown rule pack"):
        packs.pack_rules("tuned")
