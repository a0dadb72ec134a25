"""context.FlagMemo: per-process flag values remembered by their inputs give exactly what computing
them afresh gives (a differential test over sessions whose tools, lineages, privileges and
masquerades vary), and one memo never outlives the policy it was computed under."""

from __future__ import annotations

import random

from analyzer.context import FlagMemo
from analyzer.core import Analyzer
from analyzer.execution_flags import execution_flags
from analyzer.session_state import SessionState
import pytest

from policy import Policy, load_policy
from tests.analyzer.analyzer_sequences import CHECKOUT, Seq, readme_example, run_events

PROGRAMS = ["/usr/bin/bash", "/usr/bin/curl", "/usr/bin/python3", "/tmp/x/.hidden", "/tmp/x/ls",
            "/usr/bin/docker", "/proc/self/fd/3", "/usr/bin/nc", "/home/u/tool", "/usr/bin/sh"]


@pytest.fixture(params=["bundled", "default pack"])
def policy(request: pytest.FixtureRequest, bundled: Policy) -> Policy:
    """The original twelve and the default pack (rules.json)."""
    return bundled if request.param == "bundled" else load_policy(CHECKOUT / "rules.json")


def _random_session(rng: random.Random, sid: int) -> Seq:
    """Execs whose lineage, image, argv[0], capabilities and comm at exit vary, some repeated."""
    seq = Seq(session_id=sid)
    parent, t = 100, 1.0
    for i in range(rng.randint(3, 12)):
        tgid = 200 + i
        path = rng.choice(PROGRAMS)
        argv = [rng.choice(["sshd", path, "-bash", path.rsplit("/", 1)[-1]])]
        seq.exec(t, tgid, path, argv, parent=parent, cap_eff=rng.choice([0, 0, 1 << 21]),
                 exe=rng.choice([None, None, "memfd:p (deleted)"]))
        t += 0.1
        if rng.random() < 0.3:
            seq.open(t, tgid, "/home/u/.ssh/id_rsa")
            seq.connect(t + 0.05, tgid, "203.0.113.9", 443)
        if rng.random() < 0.5:
            seq.comms[tgid] = rng.choice(["sshd", "kworker", path.rsplit("/", 1)[-1][:15]])
            seq.exit(t + 0.1, tgid)
        parent = tgid if rng.random() < 0.6 else parent
        t += 0.2
    return seq


def _outputs(core: Analyzer, seqs: list[Seq]) -> list[tuple[str, dict]]:
    out = []
    for seq in seqs:
        out += run_events(core, seq.events)
    return out


def test_remembered_flags_give_the_same_decisions_and_contexts_as_fresh_ones(policy) -> None:
    rng = random.Random(7)
    seqs = [_random_session(rng, sid) for sid in range(1, 120)] + [readme_example(500)]
    memo_core, fresh_core = Analyzer(policy), Analyzer(policy)
    fresh_core._flag_memo = None                          # every value computed afresh
    with_memo, fresh = _outputs(memo_core, seqs), _outputs(fresh_core, seqs)
    assert with_memo == fresh
    assert any(topic == "analyzer.decision" for topic, _ in fresh)
    assert memo_core._flag_memo.execution                # the memo was used


def test_same_inputs_give_the_same_object_and_an_ancestor_renamed_does_not(policy) -> None:
    a = policy.analysis
    core = Analyzer(policy)
    classes, memo = core._classify.classes, FlagMemo()
    state = SessionState(session_id=1, recent_limit=64, artifact_limit=16)
    for ev in (Seq().exec(1, 201, "/usr/bin/bash", parent=100)
               .exec(2, 202, "/usr/bin/curl", parent=201).events):
        state.observe(ev)
    child = state.processes[202]
    first = execution_flags(child, state, a, classes, memo.execution)
    assert execution_flags(child, state, a, classes, memo.execution) is first
    assert first.shell_in_chain and first.network_tool_in_chain
    state.observe(Seq().exec(3, 201, "/usr/bin/python3", parent=100).events[0])   # bash exec'd python
    renamed = execution_flags(child, state, a, classes, memo.execution)
    assert renamed is not first and not renamed.shell_in_chain and renamed.interpreter_in_chain
    assert renamed == execution_flags(child, state, a, classes)


def test_a_reload_starts_a_new_memo(policy) -> None:
    core = Analyzer(policy, reload_policy=lambda: policy)
    run_events(core, readme_example(9).events)
    before = core._flag_memo
    assert before.execution
    core.reload()
    assert core._flag_memo is not before and not core._flag_memo.execution
