"""Every declared CEL field exists in the context (rules naming one evaluate), routing by shard,
and the evidence decisions carry."""

from __future__ import annotations

import random

import pytest

from analyzer.context import Context
from analyzer.core import Analyzer
from analyzer.evidence import MAX_REFS, Evidence
from analyzer_sequences import Seq, decisions, lifecycle, run_events
from policy import FEATURES, Policy, parse_policy


def test_every_declared_field_is_in_the_context_with_its_type():
    m = Context().as_map()
    assert set(m) == set(FEATURES)
    for group, fields in FEATURES.items():
        assert set(m[group]) == set(fields), group
        for name, cel_type in fields.items():
            assert type(m[group][name]) is {"bool": bool, "int": int}[cel_type], (group, name)


def rules_naming_every_field() -> bytes:
    rules = ",".join(
        f'{{"name": "r_{g}_{f}", "expr": "{g}.{f}{" >= 1" if t == "int" else ""}", "weight": 1, "enabled": true}}'
        for g, fields in FEATURES.items() for f, t in fields.items())
    return (b'{"analysis": {"lineage_max_depth": 6}, "thresholds": {"log": 1, "alert": 2}, "rules": ['
            + rules.encode() + b"]}")


def test_a_rule_naming_any_declared_field_evaluates_without_error():
    policy = parse_policy(rules_naming_every_field())
    assert not [w for w in policy.warnings if "never sets" in w]
    core = Analyzer(policy)
    s = Seq().write(1, 201, "/tmp/p").exec(2, 202, "/tmp/p")
    ds = decisions(run_events(core, s.events))
    assert core.rules.eval_errors == 0
    fired = {r["name"] for d in ds for r in d["triggered_rules"]}
    assert "r_history_write_then_exec_same_path" in fired and "r_history_udp_exfil" not in fired


# ---------------------------------------------------------------- routing

@pytest.mark.parametrize("n", [2, 3])
def test_instances_own_messages_by_shard(bundled: Policy, n: int):
    """Two sessions of one tree (different ids, same shard) land on one instance, which sees
    the first session's write when the second execs."""
    cores = [Analyzer(bundled, i, n) for i in range(n)]
    tree = {"tree_id": 11, "shard": 11}
    first = Seq(session_id=4, common=tree).write(1, 201, "/tmp/d/p")
    second = Seq(session_id=5, common=tree).exec(9, 202, "/tmp/d/p")
    outs = [run_events(c, first.events + second.events) for c in cores]
    owner = 11 % n
    assert [bool(o) for o in outs] == [i == owner for i in range(n)]
    assert decisions(outs[owner])[-1]["action"] == "ALERT"
    lc = [c.handle(("sessionizer.session", lifecycle(5, "closed", shard=11)), 0) for c in cores]
    assert [bool(x) for x in lc] == [i == owner for i in range(n)]


def test_messages_without_shard_are_routed_by_session_id(bundled: Policy):
    cores = [Analyzer(bundled, i, 2) for i in range(2)]
    s = Seq(session_id=3).write(1, 201, "/tmp/d/p")
    assert [bool(run_events(c, s.events)) for c in cores] == [False, True]


# ---------------------------------------------------------------- evidence

def test_decisions_carry_evidence_only_for_the_fields_of_their_rules(core: Analyzer):
    s = Seq().connect(0.5, 201, "93.184.216.34", 443).write(1, 201, "/tmp/d/p").exec(2, 202, "/tmp/d/p")
    (d,) = decisions(run_events(core, s.events))
    names = {r["name"] for r in d["triggered_rules"]}
    assert "download_then_suspicious_exec" in names
    named = set(core.rule_fields.of(r for r in core.policy.rules if r.name in names))
    assert {"history.write_then_exec_same_path", "execution.suspicious_path_exec",
            "history.connect_then_exec"} <= set(d["evidence"]) <= named
    assert all(d["context"][k.split(".")[0]][k.split(".")[1]] for k in d["evidence"])
    conn, exe = d["evidence"]["history.connect_then_exec"]
    assert conn == {"ts_ns": 500_000_000, "tgid": 201, "kind": "connect", "addr": "93.184.216.34:443"}
    assert exe["path"] == "/tmp/d/p" and exe["kind"] == "exec"


def test_evidence_is_bounded_and_kept_from_the_first_completion():
    ev = Evidence()
    ev.add("history.burst_exec", [(i, 1, "exec", f"/x{i}") for i in range(9)])
    ev.add("history.burst_exec", [(99, 1, "exec", "/later")])
    refs = ev.refs["history.burst_exec"]
    assert len(refs) == MAX_REFS and refs[0][0] == 0 and refs[-1][0] == 8
    assert Evidence.load(ev.dump()).refs == ev.refs


def test_non_utf8_evidence_paths_go_back_to_bytes(core: Analyzer):
    s = Seq().write(1, 201, "/tmp/d/x").exec(2, 202, "/tmp/d/x")
    for ev in s.events:
        ev["path"] = b"/tmp/d/\xff\xfe"
        if "exe" in ev:
            ev["exe"] = ev["path"]
    (d,) = decisions(run_events(core, s.events))
    write, _ = d["evidence"]["history.write_then_exec_same_path"]
    assert write["path"] == b"/tmp/d/\xff\xfe"
