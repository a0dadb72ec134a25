"""Golden sequences: the original's 30 evaluation cases (docs/original.md §14.2) through the pure core.

Fixtures are tests/fixtures/golden/<ID>.json (built by build.py beside them); ``expected`` holds
the rules, score and action by the rule arithmetic, with a note where that differs from the
original's expectation column. They hold exactly in ``history_mode: "original"`` with the exact
original pack (config/rules.original.json, the fixture's evaluation analysis values); in the
default ``"indexed"`` mode every case stays at or above its expected level.
"""

from __future__ import annotations

import json

import pytest

from analyzer.core import Analyzer
from tests.analyzer.analyzer_sequences import CHECKOUT, decisions, indexed_policy, lifecycle, parity_policy, run_events

GOLDEN = CHECKOUT / "tests" / "fixtures" / "golden"
CASES = sorted(p.stem for p in GOLDEN.glob("*.json"))
RANK = {"IGNORE": 0, "LOG": 1, "ALERT": 2}


def load(case: str) -> dict:
    return json.loads((GOLDEN / f"{case}.json").read_text())


def verdict(core: Analyzer, doc: dict) -> tuple[list[dict], dict]:
    """(decisions, closed snapshot) of one fixture run through ``core``."""
    sid = doc["events"][0]["session_id"]
    core.handle(("sessionizer.session", lifecycle(sid, "opened")), 0)
    ds = decisions(run_events(core, doc["events"]))
    (_, snap), = core.handle(("sessionizer.session", lifecycle(sid, "closed")), 0)
    return ds, snap


def verdict_in(mode: str, doc: dict) -> tuple[list[dict], dict]:
    """``verdict`` under the fixture's rules in history_mode ``mode`` ("original" or "indexed")."""
    core = Analyzer({"original": parity_policy, "indexed": indexed_policy}[mode](CHECKOUT / doc["rules_file"]))
    assert core.policy.analysis.history_mode == mode
    return verdict(core, doc)


def test_all_thirty_cases_are_present():
    assert len(CASES) == 30
    assert {c[0] for c in CASES} == {"B", "T", "M"}


@pytest.mark.parametrize("case", CASES)
def test_golden_case_in_original_mode(case: str):
    doc = load(case)
    ds, snap = verdict_in("original", doc)
    fired = [r["name"] for d in ds for r in d["triggered_rules"]]
    want = doc["expected"]
    assert sorted(fired) == sorted(want["rules"]), doc["expectation"]
    assert len(fired) == len(set(fired))                      # each rule scores once
    score = ds[-1]["score"] if ds else 0
    assert score == want["score"] == sum(d["increment"] for d in ds)
    assert snap["action"] == want["action"] and snap["score"] == want["score"]
    assert snap["complete"] is True
    if ds:
        assert ds[-1]["action"] == want["action"] or want["action"] == "IGNORE"


@pytest.mark.parametrize("case", CASES)
def test_golden_case_in_indexed_mode_stays_at_or_above(case: str):
    doc = load(case)
    ds, snap = verdict_in("indexed", doc)
    want = doc["expected"]
    fired = {r["name"] for d in ds for r in d["triggered_rules"]}
    assert set(want["rules"]) <= fired
    assert RANK[snap["action"]] >= RANK[want["action"]] and snap["score"] >= want["score"]


def test_t10_reaches_its_burst_when_each_python_opens_its_standard_library():
    """T10 (five python3 execs within 10 s): in a real run each python3 start opens ~50 standard
    library files. The original window (64 events) then holds fewer than five execs and
    burst_exec stays false; the per-kind burst counter of the indexed mode is not diluted."""
    doc = load("T10")
    padded = []
    for ev in doc["events"]:
        padded.append(ev)
        if ev["kind"] == "exec":
            for i in range(50):
                padded.append({**ev, "kind": "open", "ts_ns": ev["ts_ns"] + i, "path":
                               f"/usr/lib/python3.11/mod{i}.py", "flags": 0x80000, "mode": 0})
    for e in padded:
        if e["kind"] == "open":
            for key in ("argv", "lineage", "exe", "syscall", "argv_truncated", "cap_eff", "seccomp"):
                e.pop(key, None)
    rules = CHECKOUT / doc["rules_file"]
    original, indexed = Analyzer(parity_policy(rules)), Analyzer(indexed_policy(rules))
    run_events(original, padded)
    run_events(indexed, padded)
    sid = doc["events"][0]["session_id"]
    assert not original.sessions[sid].ctx.history.burst_exec
    assert indexed.sessions[sid].ctx.history.burst_exec
    ev = indexed.sessions[sid].marks.evidence.refs["history.burst_exec"]
    assert [r[2] for r in ev] == ["exec", "exec"] and ev[1][0] - ev[0][0] <= 10 * 10**9


@pytest.mark.parametrize("mode_policy", [parity_policy, indexed_policy])
def test_alert_is_raised_on_the_triggering_event(mode_policy):
    """M05: the ALERT decision carries the exec of the written script, and its evidence."""
    doc = load("M05")
    core = Analyzer(mode_policy(CHECKOUT / doc["rules_file"]))
    (d,) = decisions(run_events(core, doc["events"]))
    assert d["event"]["kind"] == "exec" and d["event"]["path"] == "/tmp/openclaw-eval/helper.sh"
    write, exec_ = d["evidence"]["history.write_then_exec_same_path"]
    assert (write["kind"], write["path"], write["tgid"]) == ("open", "/tmp/openclaw-eval/helper.sh", 100)
    assert (exec_["kind"], exec_["path"], exec_["ts_ns"]) == ("exec", d["event"]["path"], d["ts_ns"])
    assert set(d["evidence"]) == {"history.write_then_exec_same_path", "execution.suspicious_path_exec"}


@pytest.mark.parametrize("mode_policy", [parity_policy, indexed_policy])
def test_m10_decisions_arrive_in_stages(mode_policy):
    """M10: exfiltration first (LOG then ALERT at 9), the temp-exec rules later add to the score."""
    doc = load("M10")
    core = Analyzer(mode_policy(CHECKOUT / doc["rules_file"]))
    ds = decisions(run_events(core, doc["events"]))
    assert ds[0]["event"]["kind"] == "connect" and ds[0]["score"] == 9 and ds[0]["action"] == "ALERT"
    assert ds[-1]["event"]["path"] == "/tmp/openclaw-eval/cleanup.sh" and ds[-1]["score"] == 34
    sens, conn = ds[0]["evidence"]["history.sensitive_then_network"]
    assert sens["path"].endswith("ledger.txt") and conn == {**conn, "kind": "connect", "addr": "127.0.0.1:18000"}


@pytest.mark.parametrize("mode_policy", [parity_policy, indexed_policy])
def test_bundled_rules_do_not_see_the_fake_fs(mode_policy):
    """Without rules.eval.json the casefiles are not sensitive: M01 scores nothing."""
    doc = load("M01")
    core = Analyzer(mode_policy(CHECKOUT / "rules.json"))
    assert not decisions(run_events(core, doc["events"]))
