"""Recordings of the real collector, replayed through the unprivileged stages, give the decisions
the live pipeline made (tests/stack/make_recordings.py made both). One analyzer or two: the same.
The sessionizer runs with --no-liveness, as for `casa replay` of a recording whose processes are
gone: sessions then close on the recorded exits and timers, never on a /proc check that a slow
replay would lose to (docs/sessionizer.md, "Liveness off")."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bus import validate_event
from cli.recording import read_recording
from cli.replay import collector_batches
from tests.stack.pipeline import Pipeline

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "recordings"
RECORDINGS = sorted(p.stem for p in FIXTURES.glob("*.casarec"))

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]


def replay_pipeline(analyzers: int) -> Pipeline:
    """The stages for a replay: the recorded processes are gone, so no liveness checks."""
    return Pipeline(config=FIXTURES / "casa.json", rules=FIXTURES / "rules.json", analyzers=analyzers,
                    stage_cmds={"sessionizer": [sys.executable, "-m", "sessionizer", "--no-liveness"]})


def liveness_off(p: Pipeline) -> bool:
    return "liveness=off" in p.logs["sessionizer"].read_text(errors="replace")


def summary(decision: dict) -> dict:
    return {"action": decision["action"], "score": decision["score"], "increment": decision["increment"],
            "rules": sorted(t["name"] for t in decision["triggered_rules"])}


def expected(name: str) -> list[dict]:
    return json.loads((FIXTURES / f"{name}.decisions.json").read_text())


def test_fixtures_are_real_collector_recordings() -> None:
    assert {"write-then-exec", "sensitive-then-exec", "benign"} <= set(RECORDINGS)
    for name in RECORDINGS:
        header, messages = read_recording(FIXTURES / f"{name}.casarec")
        assert header["streams"] == ["collector"]
        batches, malformed = collector_batches(messages)
        kinds = {e["kind"] for b in batches for e in b.events}
        assert malformed == 0 and {"exec", "open", "exit"} <= kinds, (name, kinds)
        assert (FIXTURES / f"{name}.casarec").stat().st_size < 64_000
        problems = [p for b in batches for e in b.events for p in validate_event(e)]
        assert problems == [], (name, problems[:5])      # the real collector speaks docs/bus.md §5


@pytest.mark.parametrize("analyzers", [1, 2])
@pytest.mark.parametrize("name", RECORDINGS)
def test_replay_reproduces_decisions(name: str, analyzers: int) -> None:
    with replay_pipeline(analyzers) as p:
        out = p.replay(FIXTURES / f"{name}.casarec")
        assert out.returncode == 0, out.stderr
        assert liveness_off(p)
        got = [summary(d) for d in p.collected]
    assert sorted(map(json.dumps, got)) == sorted(map(json.dumps, expected(name)))


def test_sessions_spread_over_two_analyzers_give_the_same_decisions() -> None:
    with replay_pipeline(2) as p:
        assert liveness_off(p)
        for name in RECORDINGS:
            out = p.replay(FIXTURES / f"{name}.casarec", settle_s=1.5)
            assert out.returncode == 0, out.stderr
        got = [summary(d) for d in p.collected]
        owners = {env.stream for env in p.messages if env.topic == "analyzer.event"}
        sessions = {ev["session_id"] for env in p.messages if env.topic == "analyzer.event" for ev in env.events}
    assert len(sessions) >= 2 and owners == {"analyzer-0", "analyzer-1"}
    want = [d for name in RECORDINGS for d in expected(name)]
    assert sorted(map(json.dumps, got)) == sorted(map(json.dumps, want))
