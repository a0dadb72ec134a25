"""This checkout's stages pass the stage contract (tests/stack/contract.py); a stage that does not
speak the bus fails it with reasons."""

from __future__ import annotations

import sys

import pytest

from tests.stack.contract import STAGES, check_stage

pytestmark = [pytest.mark.root, pytest.mark.timeout(240)]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stock_stage_passes_the_contract(stage: str) -> None:
    results = check_stage(stage)
    assert [r.line() for r in results if r.error] == []
    assert [r.name for r in results] == ["subscribes", "binds", "heartbeats", "malformed", "control",
                                         "sigterm", "decisions"]


@pytest.mark.slow          # the contract's negative case (48 s): make test-all
def test_a_mute_stage_fails_the_contract() -> None:
    results = check_stage("analyzer", [sys.executable, "-c", "import time; time.sleep(120)"])
    lines = [r.line() for r in results]
    assert lines[0].startswith("subscribes: ERROR (does not subscribe to sessionizer.event")
    assert lines[1].startswith("binds: ERROR (no ")
    assert any(line.startswith("decisions: ERROR") for line in lines)


def test_schema_problems_names_what_is_wrong() -> None:
    from bus import Envelope
    from tests.bus.bus_samples import DECISION_MAP, SAMPLE_EVENTS
    from tests.stack.contract import schema_problems
    good_event = {**SAMPLE_EVENTS["open"], "session_id": 1, "profile": "p", "depth": 1}
    envs = [Envelope("analyzer.event", "analyzer-0", 1, 1, 1, [good_event, {**SAMPLE_EVENTS["exec"], "session_id": 1,
                                                                            "profile": "p", "depth": 0}]),
            Envelope("analyzer.decision", "analyzer-0", 1, 1, 1, [DECISION_MAP, {**DECISION_MAP, "action": "PANIC"}]),
            Envelope("analyzer.session", "analyzer-0", 1, 1, 1, [{"kind": "session", "state": "opened"}])]
    problems = schema_problems(envs)
    assert "exec event: lineage missing" in problems
    assert "analyzer.decision: action 'PANIC'" in problems
    assert "analyzer.session: session_id missing" in problems
    assert not any(p.startswith("event open") for p in problems)
