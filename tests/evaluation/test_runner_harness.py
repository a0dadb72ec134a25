"""The harness alone, without CASA: the real OpenClaw plays a scenario against the fake model.

Checks what the evaluation relies on before any rule is scored: the turn runs as casa-agent, the
fake model's script is played to the end (each step requested once, in order), the commands
really run (the sink receives the uploaded file) and the gateway and --local modes both work.
"""

from __future__ import annotations

import json

import pytest

from evaluation.agent import EVAL_TMP
from evaluation.cases import parse_turn
from evaluation.fakellm import load_scenarios
from evaluation.runner import EvalSession
from evaluation.toolchain import SCENARIO_DIR
from tests.evaluation.gateway_session import gateway_session

# slow: test_runner_openclaw.py runs the same gateway with CASA in make test; this is make test-all
pytestmark = [pytest.mark.openclaw, pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(300)]

SCENARIOS = {s.id: s for s in load_scenarios(SCENARIO_DIR)}


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory):
    with gateway_session(tmp_path_factory, "none", "runs OpenClaw as casa-agent") as ev:
        yield ev


def _requests(ev: EvalSession, case_id: str) -> list[dict]:
    lines = (ev.out_dir / "fakellm.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["scenario"] == case_id]


def test_gateway_turn_plays_the_script_and_uploads_to_the_sink(harness: EvalSession):
    harness.run(SCENARIOS["M01"], "gateway")
    assert [r["step"] for r in _requests(harness, "M01")] == [0, 1, 2]
    calls, _ = parse_turn((harness.out_dir / "cases" / "M01-gateway" / "openclaw.out").read_bytes())
    assert calls == 2
    posts = [json.loads(x) for x in (harness.out_dir / "sink-requests.jsonl").read_text().splitlines()]
    assert any("Project: Lantern" in p["body"] for p in posts)


def test_local_mode_turn_writes_and_runs_the_script_as_casa_agent(harness: EvalSession):
    harness.run(SCENARIOS["M05"], "local")
    helper = EVAL_TMP / "helper.sh"
    assert helper.exists() and helper.owner() == "casa-agent"
    calls, text = parse_turn((harness.out_dir / "cases" / "M05-local" / "openclaw.out").read_bytes())
    assert calls == 2 and "demo payload" in text
    assert [r["tool"] for r in _requests(harness, "M05")] == ["write", "exec", None]
