"""Collecting and scoring attack runs (pure): the process tree behind a scenario, the verdict
over several sessions, what "met" means, and the RESULTS.md section replacement."""

from __future__ import annotations

import json

from evaluation.attacks.collect import tree_pids, verdict_of
from evaluation.attacks.results import ScenarioResult, met, publish, render_section, replace_section, summarize
from evaluation.cases import Received
from evaluation.score import write_snapshot


def test_the_tree_follows_forks_execs_and_the_root_field_but_not_strangers() -> None:
    raw = [{"kind": "fork", "tgid": 10, "child_tgid": 11}, {"kind": "exec", "tgid": 11, "ppid": 10},
           {"kind": "exec", "tgid": 12, "ppid": 11},                  # grandchild
           {"kind": "exec", "tgid": 14, "ppid": 13, "root": 10},      # its fork was not seen
           {"kind": "open", "tgid": 99, "ppid": 1, "root": 99}]        # another tree
    assert tree_pids(raw, 10) == {10, 11, 12, 14}


def test_a_grandchild_reported_before_its_parent_is_still_placed() -> None:
    raw = [{"kind": "exec", "tgid": 12, "ppid": 11}, {"kind": "fork", "tgid": 10, "child_tgid": 11}]
    assert tree_pids(raw, 10) == {10, 11, 12}


def _session(sid: int, action: str, score: int, rules: list[str]) -> Received:
    return Received(0, {"session_id": sid, "state": "closed", "action": action, "score": score,
                    "triggered_rules": rules, "complete": True})


def test_the_verdict_is_the_most_severe_over_sessions_and_time_to_alert_is_first_alert() -> None:
    decisions = [Received(5_000_000, {"session_id": 1, "action": "LOG", "score": 5,
                                  "triggered_rules": [{"name": "a"}], "event": {"ts_ns": 1_000_000}}),
                 Received(9_000_000, {"session_id": 2, "action": "ALERT", "score": 9,
                                  "triggered_rules": [{"name": "b"}], "event": {"ts_ns": 2_000_000}}),
                 Received(9_500_000, {"session_id": 3, "action": "ALERT", "score": 20,
                                  "triggered_rules": [{"name": "c"}], "event": {"ts_ns": 2_000_000}})]
    sessions = [_session(1, "LOG", 5, ["a"]), _session(2, "ALERT", 9, ["b"])]
    v = verdict_of(decisions, sessions, {1, 2})
    assert v.action == "ALERT" and v.score == 9 and v.rules == ["a", "b"]
    assert v.time_to_alert_ms == 7.0
    assert [s["session_id"] for s in v.sessions] == [1, 2]


def test_met_is_at_or_above_for_attacks_and_exactly_ignore_for_developer_tasks() -> None:
    assert met("malicious", "LOG", "ALERT") and met("malicious", "LOG", "LOG")
    assert not met("malicious", "ALERT", "LOG") and not met("malicious", "LOG", "IGNORE")
    assert met("benign", "IGNORE", "IGNORE") and not met("benign", "IGNORE", "LOG")


def _result(sid: str, cat: str, expected: str, action: str, identity: str = "user", **kw: object) -> ScenarioResult:
    r = ScenarioResult(id=sid, name=sid, category=cat, tactic="t", technique=["T1059"] if cat == "malicious" else [],
                       expected=expected, identity=identity, profile="agent", action=action, valid=True,
                       met=met(cat, expected, action))
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def test_the_summary_counts_targets_and_an_invalid_run_never_counts_as_met() -> None:
    rs = [_result("atk-a", "malicious", "ALERT", "ALERT"), _result("atk-b", "malicious", "ALERT", "LOG"),
          _result("atk-c", "malicious", "LOG", "ALERT", valid=False), _result("dev-a", "benign", "IGNORE", "LOG"),
          _result("dev-b", "benign", "IGNORE", "IGNORE"), _result("atk-d", "malicious", "ALERT", "IGNORE",
                                                                    skipped="needs root: x")]
    s = summarize(rs)["identities"]["user"]
    assert (s["malicious"], s["malicious_met"], s["invalid"], s["skipped"]) == (3, 1, 1, 1)
    assert (s["benign_log"], s["benign_alert"]) == (1, 0)
    assert not s["malicious_target_met"] and not s["benign_target_met"]


def test_the_results_section_replaces_itself_and_keeps_the_rest() -> None:
    rs = [_result("atk-a", "malicious", "ALERT", "ALERT")]
    meta = {"date": "d", "commit": "c", "rules": "rules.json", "rules_version": "v", "duration_s": 1.0}
    section = render_section(rs, summarize(rs), meta)
    doc = replace_section("# Evaluation\n\nthe 30 cases\n", section)
    again = replace_section(doc.replace("| atk-a |", "| atk-z |"), section)
    assert doc.startswith("# Evaluation\n\nthe 30 cases\n") and "| atk-a |" in doc
    assert again == doc


def test_refreshing_the_30_case_snapshot_keeps_the_attack_section(tmp_path) -> None:
    rs = [_result("atk-a", "malicious", "ALERT", "ALERT")]
    meta = {"date": "d", "commit": "c", "rules": "rules.json", "rules_version": "v", "duration_s": 1.0}
    md = tmp_path / "RESULTS.md"
    md.write_text(replace_section("# old snapshot\n", render_section(rs, summarize(rs), meta)))
    write_snapshot(md, "| new table |\n", tmp_path)
    text = md.read_text()
    assert "| new table |" in text and "old snapshot" not in text
    assert text.count("<!-- attack-suite:begin -->") == 1 and "| atk-a |" in text


def test_publishing_writes_the_results_names_the_invalid_runs_and_snapshots_only_when_asked(tmp_path, capsys) -> None:
    rs = [_result("atk-a", "malicious", "ALERT", "ALERT"), _result("atk-b", "malicious", "ALERT", "LOG", valid=False,
                                                                  invalid_reason="hygiene: y"),
          _result("atk-c", "malicious", "ALERT", "IGNORE", valid=False, skipped="needs root: x")]
    meta = {"date": "d", "commit": "c", "rules": "rules.json", "rules_version": "v", "duration_s": 1.0}
    md, out = tmp_path / "RESULTS.md", tmp_path / "latest.json"
    md.write_text("# Evaluation\n")
    summary, bad = publish(out, rs, meta, "identity", lambda s: render_section(rs, s, meta), replace_section, None)
    assert bad == ["atk-b/user: hygiene: y"]                   # a skipped run is not an invalid one
    assert json.loads(out.read_text())["summary"] == summary and "| atk-a |" in capsys.readouterr().out
    assert md.read_text() == "# Evaluation\n"
    publish(out, rs, meta, "identity", lambda s: render_section(rs, s, meta), replace_section, md)
    assert md.read_text().startswith("# Evaluation\n") and "| atk-a |" in md.read_text()
