"""A representative subset of the attack suite through the real stack (root, supervisord, eBPF).

Four attacks and two developer tasks run as the unprivileged ``casa-attack`` user, two as root,
and the sandbox probe: what is asserted is the suite's own mechanics — the sandbox ran the
scenario and its effect happened, CASA saw the tree, every session it produced was found and
closed, the hygiene self-check passed (and, for the probe, caught every escape attempt), and the
verdict fields are consistent. Detection levels are what the full run (`make eval-attacks`)
measures; they are not asserted here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from evaluation.attacks.identity import identities
from evaluation.attacks.results import ScenarioResult
from evaluation.attacks.runner import (CHECKOUT, SuiteContext, run_scenario, suite_rules, suite_session,
                                    sandbox_unavailable)
from evaluation.attacks.scenario import Scenario, load_scenarios

SANDBOX = pytest.mark.skipif(sandbox_unavailable() is not None, reason=sandbox_unavailable() or "")
pytestmark = [pytest.mark.root, pytest.mark.stack, SANDBOX]

TABLE = {s.id: s for s in load_scenarios(include_probes=True)}
# Mechanics only: detection through the same harness is asserted by tests/stack/test_evasion_live.py
# (13 scenarios) and tests/stack/test_fields_live.py (every field), so a few of each server kind.
USER_CASES = ["atk-revshell-bash-devtcp", "atk-exfil-ssh-key-curl", "atk-dns-tunnel", "atk-ev-detached",
              "dev-c-build-run", "dev-http-server-curl"]
ROOT_CASES = ["atk-setuid-copy", "dev-make-build-test"]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("attack-subset")


def _session(who: str, artifacts: Path) -> Iterator[SuiteContext]:
    rules = suite_rules(CHECKOUT / "rules.json", artifacts / f"rules-{who}.json")
    with suite_session(identities((who,))[0], rules, artifacts) as ctx:
        yield ctx


@pytest.fixture(scope="module")
def user_ctx(artifacts: Path) -> Iterator[SuiteContext]:
    yield from _session("user", artifacts)


@pytest.fixture(scope="module")
def root_ctx(artifacts: Path) -> Iterator[SuiteContext]:
    yield from _session("root", artifacts)


def _saved(artifacts: Path, r: ScenarioResult, name: str) -> list[dict]:
    return json.loads((artifacts / r.identity / r.id / name).read_text())


def _assert_mechanics(r: ScenarioResult, sc: Scenario, artifacts: Path) -> None:
    assert r.valid, f"{r.id}: {r.invalid_reason}; stderr: {r.stderr_head}"
    assert all(r.effects.values()) and set(r.effects) == set(sc.effects)
    assert r.hygiene["ok"] and r.hygiene["writes_checked"] + r.hygiene["network_checked"] > 0
    assert r.sessions and all(s["state"] in ("closed", "shutdown") for s in r.sessions)
    raw = _saved(artifacts, r, "events.json")
    assert any(e["kind"] == "root" and e["tgid"] == r.launcher_pid for e in raw), "the launcher is no root"
    ours = {s["session_id"] for s in r.sessions}
    assert {e["session_id"] for e in _saved(artifacts, r, "session_events.json")} <= ours
    if r.action == "ALERT":
        assert r.time_to_alert_ms is not None and 0 < r.time_to_alert_ms < 10_000
    else:
        assert r.time_to_alert_ms is None
    assert r.score == max(s["score"] for s in r.sessions)


@pytest.mark.parametrize("case", USER_CASES)
def test_a_scenario_runs_sandboxed_and_is_collected_as_the_unprivileged_user(
        case: str, user_ctx: SuiteContext, artifacts: Path) -> None:
    r = run_scenario(TABLE[case], user_ctx)
    _assert_mechanics(r, TABLE[case], artifacts)
    if case == "atk-ev-detached":
        # the payload ran after the launcher exited: its exec is in the tree and in a collected session
        raw = _saved(artifacts, r, "events.json")
        payload = [e for e in raw if e["kind"] == "exec" and e.get("path") == "/tmp/d/p.sh"]
        assert payload and payload[0]["ts_ns"] > min(e["ts_ns"] for e in raw if e["kind"] == "exit"
                                                     and e["tgid"] == r.launcher_pid)
        held = [e for e in _saved(artifacts, r, "session_events.json")
                if e["kind"] == "exec" and e.get("path") == "/tmp/d/p.sh"]
        assert held, "the detached payload's session was not collected"


@pytest.mark.parametrize("case", ROOT_CASES)
def test_a_scenario_runs_sandboxed_and_is_collected_as_root(case: str, root_ctx: SuiteContext,
                                                            artifacts: Path) -> None:
    r = run_scenario(TABLE[case], root_ctx)
    _assert_mechanics(r, TABLE[case], artifacts)


def test_a_root_only_attack_is_skipped_for_the_user_with_its_reason(user_ctx: SuiteContext) -> None:
    r = run_scenario(TABLE["atk-setuid-copy"], user_ctx)
    assert r.skipped.startswith("needs root: ") and TABLE["atk-setuid-copy"].root_reason in r.skipped
    assert not r.sessions and r.launcher_pid == 0


def test_the_self_check_catches_every_escape_attempt_from_casas_own_events(user_ctx: SuiteContext) -> None:
    r = run_scenario(TABLE["probe-escape"], user_ctx)
    caught = {(v["kind"], v["what"]) for v in r.hygiene["violations"]}
    assert ("open", "/usr/local/casa-escape-probe") in caught
    assert ("open", "/tmp/link") in caught                       # the symlink: refused read-only
    assert ("connect", "10.0.0.1:80") in caught
    assert not r.valid and "hygiene" in r.invalid_reason
    assert not Path("/usr/local/casa-escape-probe").exists()
