"""Issue 11, live: a write -> exec of a /tmp payload must ALERT whatever the attacker pads,
renames, resolves relatively, hides among runtime noise, splits off or delays.

Each case is the attack suite's scenario of the same name (evaluation/attacks/scenarios/
evasion.toml, worded as the issue words it), run through the real collector and stages under the
real supervisord, with the agent unprivileged (``casa-attack``) under a generic profile
(config/casa.attacks.json): the invocation launcher, or for cases 6 and 7 the runtime launcher.
One stack serves every case; each case runs only when its test does.

What each case met on the main branch this suite was written against (rules.json = the original
twelve; `make test` output, flags true in the session shown), all IGNORE with no rule matched:

1. padding: the 80 opens push the write out of the 64-event history window
   (``history.write_then_exec_same_path`` false at the exec; ``suspicious_path_exec`` and
   ``burst_open`` true, which no rule scores alone);
2. relative path: the write and the exec are ``.x86`` / ``./.x86``, never compared as absolute
   paths, and ``execution.suspicious_path_exec`` is false (the text is not under /tmp/); with
   wget, ``history.connect_then_exec`` is true but no download rule fires without the temp path;
3. renamed binary: ``/tmp/d/id`` and ``/tmp/d/whoami`` without arguments are dropped as routine
   execs by basename: no flag at all;
4. shell-named payload: ``exec /tmp/d/sh`` in a ``bash -c`` wrapper is dropped as a wrapper shell:
   no flag at all;
5. noise substrings: the payload's *write* is dropped as runtime noise (``session_file_noise`` or
   ``loader_noise`` on ``/openclaw-state-locks-``, ``/lib/node_modules/openclaw/``,
   ``/.openclaw/``, ``/.bashrc``); the exec is seen (``suspicious_path_exec``) but has no write
   to match;
6. fake CLI: the ``openclaw agent -m hi`` exec opens an invocation session; the payload's exec
   lands there, the write stays in the runtime's activity session;
7. time gap: the activity session closes on its 5 s idle gap; the exec opens a new one without
   the write;
8. detached run: the payload runs after the invocation session closed, in a fresh activity
   session without the write.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from evaluation.attacks.identity import identities
from evaluation.attacks.results import ScenarioResult
from evaluation.attacks.runner import (CHECKOUT, SuiteContext, run_scenario, suite_rules, suite_session,
                                    sandbox_unavailable)
from evaluation.attacks.scenario import load_scenarios

SANDBOX = pytest.mark.skipif(sandbox_unavailable() is not None, reason=sandbox_unavailable() or "")
pytestmark = [pytest.mark.root, pytest.mark.stack, SANDBOX]

TABLE = {s.id: s for s in load_scenarios()}
CASES = {
    "1-padding": "atk-ev-padding",
    "2-relative-path": "atk-ev-relative-path",
    "2-relative-wget": "atk-ev-relative-wget",
    "3-renamed-id": "atk-ev-renamed-id",
    "3-renamed-whoami": "atk-ev-renamed-whoami",
    "4-shell-named-payload": "atk-ev-shell-named",
    "5-noise-state-locks": "atk-ev-noise-state-locks",
    "5-noise-node-modules": "atk-ev-noise-node-modules",
    "5-noise-dot-openclaw": "atk-ev-noise-dot-openclaw",
    "5-noise-bashrc": "atk-ev-noise-bashrc",
    "6-fake-cli": "atk-ev-fake-cli",
    "7-time-gap": "atk-ev-time-gap",
    "8-detached-delayed-run": "atk-ev-detached",
}


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SuiteContext]:
    d = tmp_path_factory.mktemp("evasion")
    rules = suite_rules(CHECKOUT / "rules.json", d / "rules.json")
    with suite_session(identities(("user",))[0], rules, d) as c:
        yield c


def _explain(r: ScenarioResult) -> str:
    sessions = "; ".join(f"session {s['session_id']} ({s['origin']}, {s['event_count']} events): "
                         f"{s['action']} {s['score']}, flags {s['flags']}" for s in r.sessions)
    return f"{r.id}: {r.action} {r.score}, rules {r.rules or 'none'}; {sessions}"


@pytest.mark.parametrize("case", list(CASES))
def test_issue11_write_then_exec_alerts_despite_the_evasion(case: str, ctx: SuiteContext) -> None:
    sc = TABLE[CASES[case]]
    assert sc.expected == "ALERT" and (sc.profile == "runtime") == case.startswith(("6-", "7-"))
    r = run_scenario(sc, ctx)
    assert r.valid, f"{r.id}: the run itself is invalid: {r.invalid_reason}"
    assert r.action == "ALERT", _explain(r)
