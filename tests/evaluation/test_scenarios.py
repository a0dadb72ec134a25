"""The 30 committed scenarios are complete and their expectations agree with the eval rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.fakellm import load_scenarios

CHECKOUT = Path(__file__).resolve().parents[2]
SCENARIOS = load_scenarios(CHECKOUT / "evaluation" / "scenarios")
RULES = json.loads((CHECKOUT / "config" / "rules.eval.json").read_text())
WEIGHTS = {r["name"]: r["weight"] for r in RULES["rules"] if r.get("enabled", True)}


def test_all_thirty_cases_of_the_original_are_present():
    ids = [s.id for s in SCENARIOS]
    want = [f"{p}{i:02d}" for p in ("B", "M", "T") for i in range(1, 11)]
    assert ids == want
    cats = {"B": "benign", "T": "boundary", "M": "malicious"}
    assert all(s.category == cats[s.id[0]] for s in SCENARIOS)


@pytest.mark.parametrize("s", SCENARIOS, ids=lambda s: s.id)
def test_expected_score_is_the_sum_of_the_expected_rules(s):
    assert set(s.expected_rules) <= set(WEIGHTS), f"{s.id}: unknown rule in expected.rules"
    assert s.expected_score == sum(WEIGHTS[r] for r in s.expected_rules)


@pytest.mark.parametrize("s", SCENARIOS, ids=lambda s: s.id)
def test_expected_action_follows_the_thresholds(s):
    t = RULES["thresholds"]
    want = "ALERT" if s.expected_score >= t["alert"] else "LOG" if s.expected_score >= t["log"] else "IGNORE"
    assert s.expected_action == want


def test_prompts_select_exactly_one_scenario():
    prompts = [s.prompt for s in SCENARIOS]
    assert not [(a, b) for a in prompts for b in prompts if a != b and a in b]


def test_no_scenario_reaches_outside_the_machine():
    """Every URL or address a script uses is loopback or one of the local scan targets."""
    import re
    for s in SCENARIOS:
        text = json.dumps([c.args for c in s.script])
        for host in re.findall(r"https?://([^/:\"' ]+)", text):
            assert host == "127.0.0.1", f"{s.id} reaches {host}"
        for ip in re.findall(r"\b(\d+\.\d+\.\d+)\.(?:\d+|%d)", text):
            assert ip in ("127.0.0", "198.18.0"), f"{s.id} uses {ip}.x"


def test_cases_the_rules_cannot_tell_from_m05_say_so():
    by_id = {s.id: s for s in SCENARIOS}
    for cid in ("B10", "T06", "T08"):
        assert "by construction" in by_id[cid].note
        assert by_id[cid].expected_action == "ALERT"
