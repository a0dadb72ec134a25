"""ALERT decisions carry the response the policy chose, and the session's live processes."""

from __future__ import annotations

import json

from analyzer.core import Analyzer
from tests.analyzer.analyzer_sequences import ORIGINAL_RULES, Seq, decisions, readme_example, run_events
from policy import parse_policy


def policy_with(response: dict | None = None, rule_responses: dict | None = None):
    doc = json.loads(ORIGINAL_RULES.read_text())
    doc["analysis"]["history_mode"] = "indexed"
    if response is not None:
        doc["response"] = response
    for rule in doc["rules"]:
        if rule_responses and rule["name"] in rule_responses:
            rule["response"] = rule_responses[rule["name"]]
    return parse_policy(json.dumps(doc).encode(), "r.json")


def test_no_response_policy_adds_nothing():
    (d,) = decisions(run_events(Analyzer(policy_with()), readme_example(7).events))
    assert d["action"] == "ALERT" and "response" not in d


def test_alert_carries_the_chosen_response_and_the_live_pids():
    core = Analyzer(policy_with({"on_alert": "kill_session", "dry_run": True}))
    (d,) = decisions(run_events(core, readme_example(7).events))
    r = d["response"]
    assert (r["action"], r["dry_run"]) == ("kill_session", True)
    assert r["rules"] == ["write_then_exec_same_path", "write_then_exec_from_suspicious_path"]
    assert r["trigger_tgid"] == 201 and r["root"] == d["event"]["root"]
    assert sorted(t for t, _ in r["tgids"]) == [200, 201]
    assert all(isinstance(ns, int) and ns > 0 for _, ns in r["tgids"])


def test_a_rule_override_beats_a_weaker_top_level_choice():
    core = Analyzer(policy_with({"on_alert": "kill_process"},
                                {"write_then_exec_from_suspicious_path": {"on_alert": "freeze_session"}}))
    (d,) = decisions(run_events(core, readme_example(7).events))
    assert d["response"]["action"] == "freeze_session"
    assert d["response"]["rules"] == ["write_then_exec_from_suspicious_path"]
    assert d["response"]["dry_run"] is False


def test_a_log_decision_carries_no_response():
    s = Seq(session_id=3)
    s.exec(1, 200, "/bin/bash", ["bash"])
    s.write(2, 200, "/home/u/helper.sh")
    s.exec(3, 201, "/home/u/helper.sh", parent=200)     # 5 points: LOG, not ALERT
    out = decisions(run_events(Analyzer(policy_with({"on_alert": "kill_session"})), s.events))
    assert out and all(d["action"] != "ALERT" and "response" not in d for d in out)


def test_a_reload_with_an_unknown_action_keeps_the_old_response(tmp_path, caplog):
    from policy import load_policy

    good = policy_with({"on_alert": "kill_process"})
    path = tmp_path / "rules.json"
    doc = json.loads(ORIGINAL_RULES.read_text())
    doc["response"] = {"on_alert": "obliterate"}
    path.write_text(json.dumps(doc, indent=2))
    core = Analyzer(good, reload_policy=lambda: load_policy(path))
    core.handle(("sessionizer.control", {"kind": "control", "command": "reload", "id": 1,
                                         "requested_ns": 0}), 0)
    assert core.policy is good and core.counters.reloads_rejected == 1
    assert "response.on_alert must be one of" in caplog.text
    (d,) = decisions(run_events(core, readme_example(7).events))
    assert d["response"]["action"] == "kill_process"


def test_a_reload_applies_a_new_response_to_later_alerts(tmp_path):
    from policy import load_policy

    path = tmp_path / "rules.json"
    doc = json.loads(ORIGINAL_RULES.read_text())
    doc["analysis"]["history_mode"] = "indexed"
    doc["response"] = {"on_alert": "freeze_session", "dry_run": True}
    path.write_text(json.dumps(doc, indent=2))
    core = Analyzer(policy_with(), reload_policy=lambda: load_policy(path))
    (d,) = decisions(run_events(core, readme_example(1).events))
    assert "response" not in d
    core.handle(("sessionizer.control", {"kind": "control", "command": "reload", "id": 1,
                                         "requested_ns": 0}), 0)
    (d,) = decisions(run_events(core, readme_example(2).events))
    assert (d["response"]["action"], d["response"]["dry_run"]) == ("freeze_session", True)
