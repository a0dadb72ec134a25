"""The attack suite through the real OpenClaw: one attack through the gateway, one developer task
with --local, each in the suite's sandbox as casa-agent with CASA running (root, eBPF).

What is asserted is the mechanics: OpenClaw played the fake model's one exec call and the
scenario's command really ran in the tree CASA followed from the gateway's and the CLI's pids,
every session of the run was found and closed, the hygiene self-check passed over OpenClaw's own
writes too, and the run was scored (the verdict over those sessions). Detection levels are what
`make eval-attacks-openclaw` measures; they are not asserted here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from evaluation.attacks.openclaw import (OpenClawContext, agent_identity, openclaw_rules, openclaw_session,
                                         run_openclaw_scenario)
from evaluation.attacks.results import ScenarioResult
from evaluation.attacks.runner import CHECKOUT, sandbox_unavailable
from evaluation.attacks.scenario import load_scenarios

SANDBOX = pytest.mark.skipif(sandbox_unavailable() is not None, reason=sandbox_unavailable() or "")
pytestmark = [pytest.mark.root, pytest.mark.stack, pytest.mark.openclaw, pytest.mark.timeout(300), SANDBOX]

TABLE = {s.id: s for s in load_scenarios()}
RUNS = [("atk-curl-pipe-sh", "gateway"),
        pytest.param("dev-own-script", "local", marks=pytest.mark.slow)]   # --local: make test-all


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("attack-openclaw")


@pytest.fixture(scope="module")
def ctx(artifacts: Path) -> Iterator[OpenClawContext]:
    if os.geteuid() != 0:
        pytest.skip("needs root: eBPF, namespaces, OpenClaw as casa-agent")
    rules = openclaw_rules(CHECKOUT / "rules.json", artifacts / "rules.json")
    with openclaw_session(rules, artifacts) as c:
        yield c


def _saved(artifacts: Path, r: ScenarioResult, name: str) -> object:
    return json.loads((artifacts / r.mode / r.id / name).read_text())


@pytest.mark.parametrize(("case", "mode"), RUNS)
def test_a_scenario_runs_through_openclaw_and_is_collected_checked_and_scored(
        case: str, mode: str, ctx: OpenClawContext, artifacts: Path) -> None:
    sc = TABLE[case]
    r = run_openclaw_scenario(sc, mode, ctx)
    report = _saved(artifacts, r, "report.json")
    assert r.valid, f"{case}/{mode}: {r.invalid_reason}; tool result: {r.stderr_head}"
    assert report["tool_calls"] == 1 and [q["tool"] for q in report["model_requests"]] == ["exec", None]
    assert all(r.effects.values()) and set(r.effects) == set(sc.effects) and r.exit_code == 0
    assert r.hygiene["ok"] and r.hygiene["writes_checked"] > 0 and r.hygiene["network_checked"] > 0

    raw = _saved(artifacts, r, "events.json")
    uid = agent_identity().uid
    runtime = report["gateway_pid"] if mode == "gateway" else report["cli_pid"]
    assert any(e["kind"] == "root" and e["tgid"] == runtime for e in raw), "OpenClaw is no CASA root"
    first_cmd = sc.script.split()[0]             # the command ran as casa-agent, under OpenClaw
    ran = [e for e in raw if e["kind"] == "exec" and (e.get("argv") or [""])[0] == first_cmd]
    assert ran and all(e["uid"] == uid for e in ran)

    assert r.sessions and all(s["state"] in ("closed", "shutdown") and s["complete"] is not False
                              for s in r.sessions)
    held = {e["session_id"] for e in _saved(artifacts, r, "session_events.json")}
    assert held <= {s["session_id"] for s in r.sessions}
    assert any(e["kind"] == "exec" and (e.get("argv") or [""])[0] == first_cmd
               for e in _saved(artifacts, r, "session_events.json")), "the command is in no collected session"
    assert r.action in ("IGNORE", "LOG", "ALERT") and r.score == max(s["score"] for s in r.sessions)
    assert r.action == max((s["action"] for s in r.sessions), key=("IGNORE", "LOG", "ALERT").index)
    assert (r.time_to_alert_ms is not None) == (r.action == "ALERT")
