"""The pure core: decisions (docs/original.md §10), lifecycle snapshots, ownership, reload, loss,
bad input."""

from __future__ import annotations

import dataclasses
import json
import logging

import msgpack
import pytest

from analyzer.core import Analyzer
from analyzer.decisions import Action, DecisionState, decide
from tests.analyzer.analyzer_sequences import CHECKOUT, ORIGINAL_RULES, Seq, decisions, in_mode, lifecycle, readme_example, run_events
from bus import Envelope, from_wire, pack, unpack
from policy import Rule, Thresholds, load_policy


def test_readme_worked_example(core):
    out = run_events(core, readme_example().events)
    (d,) = decisions(out)
    assert d["action"] == "ALERT" and d["score"] == 9 and d["increment"] == 9
    assert (d["log_threshold"], d["alert_threshold"]) == (4, 9)
    assert [r["name"] for r in d["triggered_rules"]] == [
        "write_then_exec_same_path", "write_then_exec_from_suspicious_path"]
    assert d["event"]["path"] == "/tmp/openclaw-eval/helper.sh" and d["event"]["kind"] == "exec"
    assert d["context"]["history"]["write_then_exec_same_path"] is True
    assert d["rules_version"] == core.policy.version and d["session_id"] == 25


def test_every_owned_event_is_passed_through_unchanged_and_first(core):
    s = readme_example()
    out = run_events(core, s.events)
    assert [m for t, m in out if t == "analyzer.event"] == s.events
    assert [t for t, _ in out][-2:] == ["analyzer.event", "analyzer.decision"]


def _rule(name: str, w: int) -> Rule:
    return Rule(name=name, expr="true", weight=w, enabled=True)


def test_decide_dedupes_and_accumulates():
    th = Thresholds(4, 9)
    st = DecisionState()
    r1 = decide(st, (_rule("a", 3),), th)
    assert (r1.action, r1.score, r1.increment) == (Action.IGNORE, 3, 3)
    r2 = decide(st, (_rule("a", 3), _rule("b", 2)), th)
    assert (r2.action, r2.score, [r.name for r in r2.newly]) == (Action.LOG, 5, ["b"])
    r3 = decide(st, (_rule("a", 3), _rule("b", 2)), th)          # repeat: nothing new
    assert (r3.action, r3.score, r3.newly) == (Action.IGNORE, 5, ())
    r4 = decide(st, (_rule("c", 4),), th)
    assert (r4.action, r4.score) == (Action.ALERT, 9)
    assert st.worst == Action.ALERT and st.triggered_order == ["a", "b", "c"]


def test_rules_score_once_per_session(core):
    s = readme_example()
    s.write(4, 200, "/tmp/openclaw-eval/h2.sh").exec(5, 202, "/tmp/openclaw-eval/h2.sh", parent=200)
    assert len(decisions(run_events(core, s.events))) == 1


def test_same_rules_score_again_in_another_session(core):
    a, b = readme_example(1), readme_example(2)
    assert len(decisions(run_events(core, a.events + b.events))) == 2


def test_rules_are_not_evaluated_when_context_is_unchanged(core, seq):
    for i in range(50):
        seq.open(1 + i * 0.01, 200, f"/home/u/file{i}.txt")
    run_events(core, seq.events)
    assert core.rules.evaluations <= 2
    assert core.counters.evaluations_skipped >= 48


def test_equal_contexts_share_the_rule_cache(core):
    run_events(core, readme_example(1).events + readme_example(2).events)
    assert core.rules.cache_hits >= 2


def test_lifecycle_snapshot_and_close_drops_state(core):
    core.handle(("sessionizer.session", lifecycle(25, "opened")), 0)
    run_events(core, readme_example().events)
    (_, snap), = core.handle(("sessionizer.session", lifecycle(25, "flushed")), 0)
    assert snap["state"] == "flushed" and snap["score"] == 9 and snap["action"] == "ALERT"
    assert snap["triggered_rules"] == ["write_then_exec_same_path", "write_then_exec_from_suspicious_path"]
    assert [e["kind"] for e in snap["recent_events"]] == ["exec", "open", "exec"]
    assert snap["recent_events"][1] == {"ts_ns": 2 * 10**9, "kind": "open", "tgid": 200,
                                        "path": "/tmp/openclaw-eval/helper.sh", "flags": 0x241,
                                        "mode": 0o644}
    assert snap["complete"] is True and snap["leader_tgid"] == 50
    (_, closed), = core.handle(("sessionizer.session", lifecycle(25, "closed")), 0)
    assert closed["score"] == 9 and 25 not in core.sessions
    # a late event is passed through but does not revive the session
    out = run_events(core, readme_example().events)
    assert not decisions(out) and 25 not in core.sessions and core.counters.events_late == 3


def test_joining_mid_session_is_incomplete(core):
    run_events(core, readme_example().events)
    (_, snap), = core.handle(("sessionizer.session", lifecycle(25, "flushed")), 0)
    assert snap["complete"] is False


def test_sessionizer_incomplete_is_kept(core):
    core.handle(("sessionizer.session", lifecycle(3, "opened")), 0)
    (_, snap), = core.handle(("sessionizer.session", lifecycle(3, "flushed", complete=False, lost_events=4)), 0)
    assert snap["complete"] is False and snap["lost_events"] == 4


def test_loss_marks_open_sessions_incomplete(core):
    core.handle(("sessionizer.session", lifecycle(1, "opened")), 0)
    core.handle(("sessionizer.session", lifecycle(2, "opened")), 0)
    core.mark_loss(3)
    for sid in (1, 2):
        (_, snap), = core.handle(("sessionizer.session", lifecycle(sid, "closed")), 0)
        assert snap["complete"] is False
    core.handle(("sessionizer.session", lifecycle(4, "opened")), 0)       # opened after the loss
    (_, snap), = core.handle(("sessionizer.session", lifecycle(4, "closed")), 0)
    assert snap["complete"] is True


@pytest.mark.parametrize("n", [2, 3])
def test_instances_partition_sessions_and_agree_with_one(bundled, n):
    seqs = [readme_example(sid) for sid in range(1, 8)]
    events = [e for s in seqs for e in s.events]
    single = decisions(run_events(Analyzer(bundled), events))
    parts = [decisions(run_events(Analyzer(bundled, i, n), events)) for i in range(n)]
    merged = sorted((d for p in parts for d in p), key=lambda d: d["session_id"])
    assert merged == sorted(single, key=lambda d: d["session_id"])
    assert all(d["session_id"] % n == i for i, p in enumerate(parts) for d in p)


def test_bad_instance_numbers(bundled):
    with pytest.raises(ValueError, match="need 0 <= instance < instances"):
        Analyzer(bundled, 2, 2)


def test_reload_swaps_rules_and_keeps_decision_state(original, tmp_path, caplog):
    path = tmp_path / "rules.json"
    path.write_bytes((ORIGINAL_RULES).read_bytes())
    core = Analyzer(original, reload_policy=lambda: load_policy(path))
    run_events(core, readme_example().events)
    doc = json.loads(path.read_text())
    doc["rules"].append({"name": "any_exec_shell", "expr": "execution.shell_in_chain", "weight": 1,
                         "enabled": True})
    path.write_text(json.dumps(doc))
    caplog.set_level(logging.INFO, "casa.analyzer")
    ctl = {"kind": "control", "command": "reload", "id": 7, "requested_ns": 1}
    out = core.handle(("sessionizer.control", ctl), 0)
    assert out == [("analyzer.control", ctl)]
    assert "rules reloaded | version=" in caplog.text and "rules=13" in caplog.text
    assert core.counters.reloads_applied == 1
    # state kept: the next event re-evaluates with the new rules; only the new rule is new
    (d,) = decisions(run_events(core, Seq(session_id=25).open(4, 200, "/tmp/x").events))
    assert [r["name"] for r in d["triggered_rules"]] == ["any_exec_shell"] and d["score"] == 10
    assert d["rules_version"] == core.policy.version != original.version


def test_reload_with_broken_rules_keeps_old_policy(original, tmp_path, caplog):
    path = tmp_path / "rules.json"
    doc = json.loads((ORIGINAL_RULES).read_text())
    doc["rules"][3]["expr"] = "history.sensitive_then_execve &&"
    path.write_text(json.dumps(doc, indent=2))
    core = Analyzer(original, reload_policy=lambda: load_policy(path))
    out = core.handle(("sessionizer.control", {"kind": "control", "command": "reload", "id": 1,
                                               "requested_ns": 0}), 0)
    assert out[0][0] == "analyzer.control"
    assert core.policy is original and core.counters.reloads_rejected == 1
    assert "rule 'sensitive_file_then_suspicious_exec' expr does not compile" in caplog.text
    assert f"keeping the 12 rules of version {original.version}" in caplog.text


@pytest.mark.parametrize("bad", [
    "not a map", {"kind": "exec"}, {"kind": "open", "session_id": "1", "ts_ns": 1, "tgid": 1},
    {"kind": "open", "session_id": 1, "ts_ns": 1, "tgid": 1, "path": 5},
    {"kind": "exec", "session_id": 1, "ts_ns": 1, "tgid": 1, "argv": "x"},
])
def test_malformed_events_are_counted_and_dropped(core, bad):
    assert core.handle(("sessionizer.event", bad), 0) == []
    assert core.counters.events_malformed == 1


def test_malformed_lifecycle_and_control(core):
    assert core.handle(("sessionizer.session", {"state": "opened"}), 0) == []
    assert core.handle(("sessionizer.control", ["x"]), 0) == []
    assert core.counters.events_malformed == 2


def test_odd_field_values_do_not_crash(core, seq):
    seq.exec(1, 200, "/bin/sh")
    ev = seq.events[0]
    ev["lineage"] = "oops"
    ev["cap_eff"] = "x"
    ev["argv"] = [1, b"\xff"]
    assert core.handle(("sessionizer.event", ev), 0)[0] == ("analyzer.event", ev)


def test_non_utf8_and_long_paths_pass_through_intact(core):
    """Non-UTF-8 bytes arrive as msgpack bin; they survive analysis and re-publishing."""
    weird = b"/tmp/\xff\xfe dir\nname/" + b"x" * 4000 + b".sh"
    s = Seq(session_id=9)
    s.write(1, 200, "placeholder").exec(2, 201, "placeholder")
    for ev in s.events:
        ev["path"] = weird
    s.events[1]["exe"] = weird
    s.events[1]["argv"] = [weird, "arg\twith\ttabs"]
    env = unpack(pack(Envelope("sessionizer.event", "sessionizer", 1, 1, 1, s.events)))
    out = core.handle(env, 0)
    (d,) = decisions(out)
    assert d["event"]["path"] == weird and "write_then_exec_same_path" in str(d["triggered_rules"])
    frames = pack(Envelope("analyzer.decision", "analyzer-0", 1, 1, 1, [d]))
    assert unpack(frames).events[0]["event"]["path"] == weird
    (_, snap), = core.handle(("sessionizer.session", lifecycle(9, "flushed")), 0)
    assert msgpack.unpackb(msgpack.packb(snap["recent_events"], use_bin_type=True),
                           raw=False)[1]["path"] == weird
    assert from_wire(snap["recent_events"][1]["path"]).endswith(".sh")


def test_unowned_messages_are_ignored(bundled):
    core = Analyzer(bundled, 1, 2)
    assert run_events(core, readme_example(4).events) == []
    assert core.handle(("sessionizer.session", lifecycle(4, "opened")), 0) == []


def test_tick_closes_stale_sessions(core):
    core.handle(("sessionizer.session", lifecycle(1, "opened")), 0)
    assert core.tick(10**9) == [] and 1 in core.sessions
    (topic, snap), = core.tick(7 * 3600 * 10**9)
    assert topic == "analyzer.session" and snap["state"] == "closed" and snap["complete"] is False
    assert 1 not in core.sessions


def test_policy_rule_with_eval_error_is_no_match(bundled, tmp_path):
    """An error the type check cannot see (division by zero) is no match, and counted; so is a
    field name that got past it (a Policy built without parse_policy)."""
    doc = json.loads((CHECKOUT / "rules.json").read_text())
    doc["rules"] = [{"name": "div", "expr": "capability.dangerous_count / 0 == 1", "weight": 1,
                     "enabled": True}]
    p = tmp_path / "r.json"
    p.write_text(json.dumps(doc))
    policy = load_policy(p)
    typo = Rule(name="typo", expr="history.nope && execution.shell_in_chain", weight=5, enabled=True)
    core = Analyzer(dataclasses.replace(policy, rules=policy.rules + (typo,)))
    assert not decisions(run_events(core, readme_example().events))
    assert core.rules.eval_errors >= 2


def test_cel_or_absorbs_an_error_like_cel_go(tmp_path):
    """CEL's || and && are commutative: `error || true` is true (as in cel-go)."""
    doc = json.loads((CHECKOUT / "rules.json").read_text())
    doc["rules"] = [{"name": "typo_or", "expr": "capability.dangerous_count / 0 == 1 || execution.shell_in_chain",
                     "weight": 5, "enabled": True}]
    p = tmp_path / "r.json"
    p.write_text(json.dumps(doc))
    (d,) = decisions(run_events(Analyzer(load_policy(p)), readme_example().events))
    assert d["triggered_rules"][0]["name"] == "typo_or" and d["action"] == "LOG"


def test_reload_reclassifies_the_window(bundled, eval_policy):
    """history_mode "original": after a reload that makes the fake fs sensitive, events already
    in the window count."""
    policies = iter([in_mode(eval_policy, "original")])
    core = Analyzer(in_mode(bundled, "original"), reload_policy=lambda: next(policies))
    s = Seq(session_id=8).open(1, 200, "/srv/casa-eval/fake_fs/casefiles/alpha/briefing.txt")
    run_events(core, s.events)
    assert not core.sessions[8].ctx.history.sensitive_then_network
    assert core.reload()
    (d,) = decisions(run_events(core, Seq(session_id=8).connect(2, 201, "10.9.9.9", 443).events))
    assert d["triggered_rules"][0]["name"] == "sensitive_file_then_network"


def test_reload_applies_to_later_events_in_indexed_mode(bundled, eval_policy):
    """history_mode "indexed": the indices keep what past events were classified as; a reload
    classifies what comes after it (docs/rules.md, Reload)."""
    policies = iter([eval_policy])
    core = Analyzer(bundled, reload_policy=lambda: next(policies))
    briefing = "/srv/casa-eval/fake_fs/casefiles/alpha/briefing.txt"
    run_events(core, Seq(session_id=8).open(1, 200, briefing).events)
    assert core.reload()
    assert not decisions(run_events(core, Seq(session_id=8).connect(2, 201, "10.9.9.9", 443).events))
    (d,) = decisions(run_events(core, Seq(session_id=8).open(3, 200, briefing).events))
    assert d["triggered_rules"][0]["name"] == "sensitive_file_then_network"


def test_control_counters(core):
    core.handle(("sessionizer.control", {"kind": "control", "command": "reload", "id": 5,
                                         "requested_ns": 0}), 0)
    out = core.handle(("sessionizer.control", {"kind": "control", "command": "dance", "id": 6,
                                               "requested_ns": 0}), 0)
    assert out[0][1]["command"] == "dance"                     # unknown commands are forwarded
    stats = core.stats()
    assert stats["last_reload_id"] == 5 and stats["control_unknown"] == 1
    assert stats["rules_version"] == core.policy.version
    assert stats["reloads_applied"] == 0                       # no reload source configured


def test_closed_ids_remember_the_last_n_like_a_bounded_deque():
    """ClosedIds answers membership like the deque it replaces, duplicates and eviction included."""
    import random
    from collections import deque
    from analyzer.core import ClosedIds
    rng = random.Random(5)
    ids, ref = ClosedIds(7), deque(maxlen=7)
    for _ in range(3000):
        sid = rng.randint(0, 20)
        ids.append(sid)
        ref.append(sid)
        assert list(ids) == list(ref) and len(ids) == len(ref)
        assert all((x in ids) == (x in ref) for x in range(22))
