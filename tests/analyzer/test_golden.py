"""Golden sequences: the original's 30 evaluation cases (§14.2) through the pure core.

Fixtures are tests/fixtures/golden/<ID>.json (built by build.py beside them); ``expected`` holds
the rules, score and action by the rule arithmetic, with a note where that differs from the
original's expectation column.
"""

from __future__ import annotations

import json

import pytest

from analyzer.core import Analyzer
from analyzer_sequences import CHECKOUT, decisions, lifecycle, run_events
from policy import load_policy

GOLDEN = CHECKOUT / "tests" / "fixtures" / "golden"
CASES = sorted(p.stem for p in GOLDEN.glob("*.json"))


def load(case: str) -> dict:
    return json.loads((GOLDEN / f"{case}.json").read_text())


def test_all_thirty_cases_are_present():
    assert len(CASES) == 30
    assert {c[0] for c in CASES} == {"B", "T", "M"}


@pytest.mark.parametrize("case", CASES)
def test_golden_case(case: str):
    doc = load(case)
    core = Analyzer(load_policy(CHECKOUT / doc["rules_file"]))
    sid = doc["events"][0]["session_id"]
    core.handle(("sessionizer.session", lifecycle(sid, "opened")), 0)
    ds = decisions(run_events(core, doc["events"]))
    fired = [r["name"] for d in ds for r in d["triggered_rules"]]
    want = doc["expected"]
    assert sorted(fired) == sorted(want["rules"]), doc["expectation"]
    assert len(fired) == len(set(fired))                      # each rule scores once
    score = ds[-1]["score"] if ds else 0
    assert score == want["score"] == sum(d["increment"] for d in ds)
    (_, snap), = core.handle(("sessionizer.session", lifecycle(sid, "closed")), 0)
    assert snap["action"] == want["action"] and snap["score"] == want["score"]
    assert snap["complete"] is True
    if ds:
        assert ds[-1]["action"] == want["action"] or want["action"] == "IGNORE"


def test_alert_is_raised_on_the_triggering_event():
    """M05: the ALERT decision carries the exec of the written script."""
    doc = load("M05")
    core = Analyzer(load_policy(CHECKOUT / doc["rules_file"]))
    (d,) = decisions(run_events(core, doc["events"]))
    assert d["event"]["kind"] == "exec" and d["event"]["path"] == "/tmp/openclaw-eval/helper.sh"


def test_m10_decisions_arrive_in_stages():
    """M10: exfiltration first (LOG then ALERT at 9), the temp-exec rules later add to the score."""
    doc = load("M10")
    core = Analyzer(load_policy(CHECKOUT / doc["rules_file"]))
    ds = decisions(run_events(core, doc["events"]))
    assert ds[0]["event"]["kind"] == "connect" and ds[0]["score"] == 9 and ds[0]["action"] == "ALERT"
    assert ds[-1]["event"]["path"] == "/tmp/openclaw-eval/cleanup.sh" and ds[-1]["score"] == 34


def test_bundled_rules_do_not_see_the_fake_fs():
    """Without rules.eval.json the casefiles are not sensitive: M01 scores nothing."""
    doc = load("M01")
    core = Analyzer(load_policy(CHECKOUT / "rules.json"))
    assert not decisions(run_events(core, doc["events"]))
