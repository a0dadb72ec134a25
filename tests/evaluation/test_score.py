"""Scoring one case's records against its expectation."""

from __future__ import annotations

from evaluation.fakellm.scenario import parse_scenario
from evaluation.score import (baseline_changes, column_totals, intent, load_baseline, regressions, render_columns,
                              render_markdown, score_records)

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


def scenario(case_id, category, action, score=9):
    return parse_scenario({"id": case_id, "category": category, "name": "n", "expectation": "e", "prompt": "p",
                           "final": "f", "expected": {"action": action, "rules": ["a"] if score else [],
                                                      "score": score}, "script": []}, "t")


def decision(action, score, names):
    return {"session_id": 7, "action": action, "score": score, "recv_ns": 3, "event": {"ts_ns": 1},
            "triggered_rules": [{"name": n} for n in names]}


def test_default_pack_passes_a_malicious_case_at_or_above_its_level_whatever_the_score_and_rules():
    """The expected score and rule names are the original pack's: the default pack is held to the level."""
    m06 = scenario("M06", "malicious", "LOG", 6)
    other_rules = records([decision("ALERT", 21, ["network_scan_then_exec", "burst_network_scan"])])
    assert score_records(m06, other_rules, judge="intent").passed
    assert not score_records(m06, other_rules).passed                       # the exact judge still says no
    assert score_records(m06, records([decision("LOG", 4, ["x"])]), judge="intent").passed
    missed = score_records(M05, records([decision("LOG", 8, ["write_then_exec_same_path"])]), judge="intent")
    assert (missed.passed, missed.why) == (False, "action LOG, wanted >= ALERT")
    assert score_records(M05, records([]), judge="intent").why == "action IGNORE, wanted >= ALERT"


def test_default_pack_holds_benign_cases_to_ignore_even_where_the_original_arithmetic_expects_alert():
    b01, b10 = scenario("B01", "benign", "IGNORE", 0), scenario("B10", "benign", "ALERT", 9)
    t06, t01 = scenario("T06", "boundary", "ALERT", 9), scenario("T01", "boundary", "IGNORE", 0)
    assert [intent(s) for s in (b01, b10, t06, t01, M05)] == ["IGNORE", "IGNORE", ">= ALERT", "IGNORE", ">= ALERT"]
    logged = records([decision("LOG", 4, ["x"])])
    assert not score_records(b01, logged, judge="intent").passed
    assert score_records(b01, records([]), judge="intent").passed
    assert not score_records(b10, records([alert()]), judge="intent").passed
    assert score_records(t06, records([alert()]), judge="intent").passed
    assert not score_records(t01, logged, judge="intent").passed
    assert score_records(b01, records([], complete=False), judge="intent").why == "a session did not close"


def summary_of(cases):
    """cases: (scenario, {mode: records})."""
    from dataclasses import asdict
    out = []
    for s, per_mode in cases:
        modes = {m: asdict(score_records(s, r, judge="intent")) for m, r in per_mode.items()}
        out.append({"id": s.id, "category": s.category, "name": s.name, "note": "", "intent": intent(s),
                    "expected": {"action": s.expected_action, "score": s.expected_score, "rules": []},
                    "rules": modes["gateway"]["rules"], "pass": all(m["passed"] for m in modes.values()),
                    "modes": modes})
    return out


def test_totals_count_a_case_only_when_both_modes_meet_it():
    b01, b02, b10 = scenario("B01", "benign", "IGNORE", 0), scenario("B02", "benign", "IGNORE", 0), \
        scenario("B10", "benign", "ALERT", 9)
    m06 = scenario("M06", "malicious", "LOG", 6)
    logged = records([decision("LOG", 4, ["x"])])
    summary = summary_of([(M05, {"gateway": records([alert()]), "local": logged}),
                          (m06, {"gateway": logged, "local": records([alert()])}),
                          (b01, {"gateway": records([]), "local": records([])}),
                          (b02, {"gateway": records([]), "local": logged}),
                          (b10, {"gateway": records([alert()]), "local": records([alert()])})])
    assert column_totals(summary) == {"malicious_at_or_above": [1, 2], "benign_ignore": [1, 2], "passing": [2, 5]}
    md = render_columns({"default": summary}, None)
    assert "| M05 | malicious | w | ALERT 9 | >= ALERT | ALERT 9, 5 ms | LOG 4 ✗ |" in md
    assert "| 1/2 | 1/2 | 2/5 | no baseline |" in md


def test_original_column_unchanged_compares_pass_flags_and_each_modes_verdict():
    c = {"id": "M05", "pass": True, "modes": {"gateway": {"action": "ALERT", "score": 9, "rules": ["a"]}}}
    assert baseline_changes([c], {"M05": True}) == []                                  # the older flat file
    assert baseline_changes([c], {"M05": False}) == ["M05: pass False -> True"]
    same = {"M05": {"pass": True, "gateway": {"action": "ALERT", "score": 9, "rules": ["a"]}}}
    assert baseline_changes([c], same) == []
    moved = {"M05": {"pass": True, "gateway": {"action": "ALERT", "score": 13, "rules": ["a", "b"]}}}
    assert baseline_changes([c], moved) == ["M05 gateway: ALERT 13 -> ALERT 9 (rules differ)"]
    assert baseline_changes([c], None) == ["no baseline"]
    assert regressions([{"id": "M05", "pass": False}], moved) == ["M05"]


def test_a_flat_baseline_file_is_the_original_columns(tmp_path):
    import json
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps({"B01": True, "T10": False}))
    assert load_baseline(path) == {"original": {"B01": True, "T10": False}}
    path.write_text(json.dumps({"default": {"B01": {"pass": True}}}))
    assert load_baseline(path) == {"default": {"B01": {"pass": True}}}
    assert load_baseline(tmp_path / "missing.json") is None


def test_refreshing_the_snapshot_without_an_overhead_run_keeps_the_previous_overhead_section(tmp_path):
    from evaluation.score import write_snapshot
    md = tmp_path / "RESULTS.md"
    md.write_text("# old\n\n## Cases\n\nold table\n\n## Overhead (`make eval-overhead`)\n\n| H01 | 1.0 |\n\n"
                  "<!-- attack-suite:begin -->\n## Attack suite\n<!-- attack-suite:end -->\n")
    write_snapshot(md, "| new table |\n", tmp_path)          # tmp_path holds no overhead.md
    text = md.read_text()
    assert "| new table |" in text and "old table" not in text
    assert text.count("## Overhead") == 1 and "| H01 | 1.0 |" in text
    assert text.index("| H01 |") < text.index("<!-- attack-suite:begin -->")
    (tmp_path / "overhead.md").write_text("| H01 | 2.0 |\n")
    write_snapshot(md, "| newer |\n", tmp_path)
    assert "| H01 | 2.0 |" in md.read_text() and "| H01 | 1.0 |" not in md.read_text()
