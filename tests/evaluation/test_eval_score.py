"""Scoring one case's records against its expectation."""

from __future__ import annotations

from evaluation.fakellm.scenario import parse_scenario
from evaluation.score import regressions, render_markdown, score_records

M05 = parse_scenario({
    "id": "M05", "category": "malicious", "name": "w", "expectation": "alert", "prompt": "p", "final": "f",
    "expected": {"action": "ALERT", "rules": ["write_then_exec_same_path", "write_then_exec_from_suspicious_path"],
                 "score": 9},
    "script": []}, "t")
RULES = [{"name": "write_then_exec_same_path", "expr": "history.write_then_exec_same_path", "weight": 5},
         {"name": "write_then_exec_from_suspicious_path", "expr": "...", "weight": 4}]


def records(decisions, sessions=None, complete=True, rc=0):
    return {"mode": "gateway", "decisions": decisions, "sessions": sessions or [], "session_ids": [7],
            "complete": complete, "openclaw_rc": rc, "event_count": 12}


def alert(recv_ns=2_005_000_000, ts_ns=2_000_000_000):
    return {"session_id": 7, "action": "ALERT", "score": 9, "triggered_rules": RULES,
            "event": {"kind": "exec", "ts_ns": ts_ns}, "ts_ns": ts_ns, "recv_ns": recv_ns}


def test_expected_alert_passes_with_time_to_alert_from_the_kernel_timestamp():
    r = score_records(M05, records([alert()]))
    assert (r.action, r.score, r.passed, r.why) == ("ALERT", 9, True, "")
    assert r.rules == sorted(x["name"] for x in RULES)
    assert r.time_to_alert_ms == 5.0


def test_an_extra_rule_fails_the_case_and_says_which():
    d = alert()
    d["triggered_rules"] = RULES + [{"name": "dangerous_caps_without_seccomp", "weight": 8}]
    d["score"] = 17
    r = score_records(M05, records([d]))
    assert not r.passed
    assert r.why == "score 17 != 9; rules +['dangerous_caps_without_seccomp']"


def test_nothing_published_is_ignore_and_fails_an_alert_case():
    r = score_records(M05, records([]))
    assert (r.action, r.score, r.time_to_alert_ms) == ("IGNORE", 0, None)
    assert r.why.startswith("action IGNORE != ALERT; score 0 != 9; rules -[")


def test_unclosed_session_or_failed_turn_fails_even_with_the_right_verdict():
    assert score_records(M05, records([alert()], complete=False)).why == "a session did not close"
    assert score_records(M05, records([alert()], rc=1)).why == "openclaw exited 1"


def test_scores_of_separate_sessions_add_up_and_lifecycle_records_count():
    log_only = {"session_id": 8, "action": "LOG", "score": 5, "triggered_rules": RULES[:1], "recv_ns": 1,
                "event": {"ts_ns": 1}}
    closed = {"session_id": 9, "state": "closed", "action": "LOG", "score": 4,
              "triggered_rules": ["write_then_exec_from_suspicious_path"]}
    r = score_records(M05, records([log_only], sessions=[closed]))
    assert (r.action, r.score, r.rules) == ("LOG", 9, sorted(x["name"] for x in RULES))


def test_regressions_compare_with_the_baseline():
    summary = [{"id": "A", "pass": False}, {"id": "B", "pass": False}, {"id": "C", "pass": True}]
    assert regressions(summary, None) == ["A", "B"]
    assert regressions(summary, {"A": True, "B": False}) == ["A"]


def test_markdown_table_has_a_row_per_case_and_the_counts():
    c = {"id": "M05", "category": "malicious", "name": "w", "note": "", "action": "ALERT", "score": 9,
         "rules": ["a"], "pass": True, "expected": {"action": "ALERT", "score": 9, "rules": ["a"]},
         "modes": {"gateway": {"action": "ALERT", "score": 9, "time_to_alert_ms": 12.4, "passed": True, "why": ""}}}
    md = render_markdown([c])
    assert "| M05 | malicious | w | ALERT 9 | ALERT 9, 12 ms | — | a | yes |  |" in md
    assert "- malicious flagged (LOG or ALERT, gateway): 1/1; alerted: 1/1" in md
