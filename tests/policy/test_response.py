"""rules.json ``response``: validation, per-rule overrides and the strongest-action choice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from policy import PolicyError, parse_policy
from policy.response import Response, choose

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "config" / "rules.original.json"


def doc(**over) -> dict:
    base = json.loads(BASE.read_text())
    base.update(over)
    return base


def parse(d: dict):
    return parse_policy(json.dumps(d, indent=2).encode(), "r.json")


def test_no_response_key_means_none():
    p = parse(doc())
    assert p.response == Response("none", False)
    assert all(r.response is None for r in p.rules)


def test_top_level_and_rule_responses_are_parsed():
    d = doc(response={"on_alert": "kill_session", "dry_run": True})
    d["rules"][0]["response"] = {"on_alert": "freeze_session"}
    p = parse(d)
    assert p.response == Response("kill_session", True)
    assert p.rules[0].response == Response("freeze_session", False)
    assert p.rules[1].response is None


@pytest.mark.parametrize("bad, words", [
    ({"on_alert": "nuke"}, "on_alert must be one of none, kill_process, freeze_session, kill_session, not 'nuke'"),
    ({"on_alert": 3}, "not an integer"),
    ({"on_alert": "kill_process", "dry_run": "yes"}, "dry_run must be true or false"),
    ("kill_session", "must be an object"),
])
def test_a_bad_response_is_a_located_error(bad, words):
    with pytest.raises(PolicyError) as info:
        parse(doc(response=bad))
    assert any(words in p and p.startswith("r.json:") for p in info.value.problems), info.value.problems


def test_a_bad_rule_response_names_the_rule():
    d = doc()
    d["rules"][2]["response"] = {"on_alert": "kill_everything"}
    with pytest.raises(PolicyError) as info:
        parse(d)
    name = d["rules"][2]["name"]
    assert any(f"rule '{name}': response.on_alert" in p for p in info.value.problems)


def test_strongest_action_wins_and_dry_run_needs_every_chooser():
    top = Response("kill_process", True)
    got = choose(top, [("a", None), ("b", Response("freeze_session", True)),
                       ("c", Response("freeze_session", False))])
    assert (got.action, got.dry_run, got.rules) == ("freeze_session", False, ("b", "c"))
    got = choose(top, [("a", None), ("b", Response("none"))])
    assert (got.action, got.dry_run, got.rules) == ("kill_process", True, ("a",))
    got = choose(Response(), [("a", Response("kill_session", True)), ("b", Response("kill_process"))])
    assert (got.action, got.dry_run) == ("kill_session", True)
    assert choose(Response(), [("a", None)]).action == "none"


def test_rules_check_names_an_unknown_action(tmp_path):
    bad = tmp_path / "rules.json"
    bad.write_text(json.dumps(doc(response={"on_alert": "explode"}), indent=2))
    run = subprocess.run([sys.executable, "-m", "cli", "rules", "check", str(bad)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "response.on_alert must be one of" in run.stderr and "'explode'" in run.stderr
    good = tmp_path / "good.json"
    good.write_text(json.dumps(doc(response={"on_alert": "kill_session", "dry_run": True}), indent=2))
    run = subprocess.run([sys.executable, "-m", "cli", "rules", "check", str(good)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "response=kill_session(dry_run)" in run.stdout
