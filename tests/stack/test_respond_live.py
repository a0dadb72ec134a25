"""The responder on the real stack: real eBPF collector, real supervisord, real processes.

A payload the agent writes to its scratch directory under /tmp, runs, and that sleeps 2 s before
it creates a marker file: with ``kill_session`` the marker never appears; with ``dry_run`` it does
and alert.log says what would have been killed; with ``freeze_session`` it appears only after
``casa thaw``. A benign session running at the same time is never touched, and a forged request
naming a process outside any agent tree, pid 1 or a CASA stage signals none of them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bus.counters import for_stream
from responder.__main__ import Responder
from responder.guard import casa_guard
from tests.stack.stack import CHECKOUT, Stack

pytestmark = [pytest.mark.root, pytest.mark.stack]

RULES = CHECKOUT / "config" / "rules.original.json"


def rules_with(response: dict) -> dict:
    doc = json.loads(RULES.read_text())
    doc["response"] = response
    return doc


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    path = tmp_path_factory.mktemp("respond") / "rules.json"
    path.write_text(json.dumps(rules_with({"on_alert": "kill_session", "dry_run": True}), indent=2))
    with Stack(rules=path) as st:
        yield st


def use_response(st: Stack, response: dict) -> None:
    st.rules.write_text(json.dumps(rules_with(response), indent=2))
    done = st.casa("reload", "--pid-file", str(st.pid_file))
    assert done.returncode == 0, done.stdout + done.stderr


def payload(st: Stack, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    """Write, run, sleep 2 s, then create the marker (a command after it keeps the agent's bash
    a parent, not exec'd into the script)."""
    marker = st.work / f"{name}.marker"
    script = (f"printf '#!/bin/sh\\nsleep 2\\ntouch {marker}\\n' > {name}.sh; chmod +x {name}.sh; "
              f"./{name}.sh; echo after")
    return st.start_agent(script), marker


def response_of(st: Stack, name: str, timeout_s: float = 30.0) -> tuple[dict, dict]:
    """The ALERT record for the payload ``name`` and the responder's record that follows it."""
    alert = st.wait_for_log("alert.log", lambda r: "decision" in r and r["decision"]["action"] == "ALERT"
                            and str(r["event"].get("path", "")).endswith(f"{name}.sh"), timeout_s)
    done = st.wait_for_log("alert.log", lambda r: "response" in r and "decision" not in r
                           and r["session_id"] == alert["session_id"], timeout_s)
    return alert, done


def test_dry_run_records_what_would_be_killed_and_touches_nothing(stack: Stack) -> None:
    use_response(stack, {"on_alert": "kill_session", "dry_run": True})
    agent, marker = payload(stack, "dry")
    alert, done = response_of(stack, "dry")
    assert alert["decision"]["response"]["action"] == "kill_session"
    r = done["response"]
    assert r["dry_run"] is True and r["errors"] == []
    assert agent.pid in r["would_signal"] and alert["event"]["pid"] in r["would_signal"]
    assert agent.wait(15) == 0
    assert marker.exists()


def test_kill_session_stops_the_payload_before_its_next_step_and_spares_a_benign_session(stack: Stack) -> None:
    use_response(stack, {"on_alert": "kill_session"})
    benign_marker = stack.work / "benign.marker"
    benign = stack.start_agent(f"cat /etc/hostname > /dev/null; sleep 5; touch {benign_marker}")
    agent, marker = payload(stack, "evil")
    alert, done = response_of(stack, "evil")
    r = done["response"]
    assert r["dry_run"] is False and r["errors"] == [], r
    assert agent.pid in r["pids"] and alert["event"]["pid"] in r["pids"]
    assert benign.pid not in r["pids"]
    assert isinstance(r["latency_ms"], float) and r["latency_ms"] >= 0
    assert agent.wait(10) == -signal.SIGKILL
    time.sleep(3)                                   # the payload would have touched it after 2 s
    assert not marker.exists()
    assert benign.wait(15) == 0 and benign_marker.exists()
    assert all(benign.pid not in x.get("response", {}).get("pids", []) for x in stack.log("alert.log"))


def test_kill_session_catches_a_tree_that_forks_in_a_loop(stack: Stack) -> None:
    """The attacker expects to be killed and forks as fast as it can (400 children that each
    wait 2 s, then write a marker; bounded, so it stops by itself): freezing round after round
    until the tree stops growing, then killing, leaves no child to write anything."""
    use_response(stack, {"on_alert": "kill_session"})
    marks = stack.work / "bomb-marks"
    marks.mkdir(mode=0o777)
    marks.chmod(0o777)
    body = (f"#!/bin/sh\\ni=0\\nwhile [ $i -lt 400 ]; do (sleep 2; touch {marks}/m.$i) & "
            f"i=$((i+1)); done\\nwait\\n")
    agent = stack.start_agent(f"printf '{body}' > bomb.sh; chmod +x bomb.sh; ./bomb.sh; echo after")
    alert, done = response_of(stack, "bomb")
    r = done["response"]
    assert r["dry_run"] is False and r["errors"] == [], r
    assert agent.wait(15) == -signal.SIGKILL
    time.sleep(4)                                   # a surviving child would have written by now
    assert sorted(p.name for p in marks.iterdir()) == []
    assert len(r["pids"]) >= 3, r


def test_kill_process_kills_the_trigger_and_leaves_the_rest_of_the_tree(stack: Stack) -> None:
    use_response(stack, {"on_alert": "kill_process"})
    agent, marker = payload(stack, "single")
    alert, done = response_of(stack, "single")
    r = done["response"]
    assert r["pids"] == [alert["event"]["pid"]] != [agent.pid] and r["errors"] == []
    assert agent.wait(15) == 0                      # the agent's shell went on: "echo after"
    time.sleep(2.5)
    assert not marker.exists()                      # the script that would write it was killed
    beats = stack.counters(["responder"], lambda c: c.get("responder", {}).get("signalled_processes", 0) >= 1)
    assert for_stream("responder").undeclared(beats["responder"]) == []
    status = stack.casa("status", "--url", stack.url)
    assert "\nresponder" in "\n" + status.stdout and "RUNNING" in status.stdout, status.stdout


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2]


def test_freeze_session_holds_the_tree_until_casa_thaw(stack: Stack) -> None:
    use_response(stack, {"on_alert": "freeze_session"})
    agent, marker = payload(stack, "frozen")
    alert, done = response_of(stack, "frozen")
    r = done["response"]
    assert agent.pid in r["pids"] and r["errors"] == []
    time.sleep(3)
    assert agent.poll() is None and _state(agent.pid) == "T"
    assert not marker.exists()
    thawed = stack.casa("thaw", str(alert["session_id"]), "--state-dir", str(stack.state_dir),
                        "--supervisord-pid-file", str(stack.root_run / "supervisord.pid"))
    assert thawed.returncode == 0, thawed.stdout + thawed.stderr
    assert f"session {alert['session_id']}: resumed" in thawed.stdout
    assert agent.wait(15) == 0
    assert marker.exists()
    again = stack.casa("thaw", str(alert["session_id"]), "--state-dir", str(stack.state_dir))
    assert again.returncode == 3                    # the record is gone once every process resumed


def test_a_forged_request_signals_nothing_outside_the_agent_tree(stack: Stack) -> None:
    outsider = subprocess.Popen(["sleep", "30"])          # the test's own child: no agent tree
    agent = stack.start_agent("sleep 30")
    try:
        stack.wait_for_log("events.log", lambda r: r.get("pid") == agent.pid)
        guard = casa_guard(stack.root_run / "supervisord.pid")
        # in-process, the guard would protect this test (its own pid) and so the agent below it
        guard = dataclasses.replace(guard, protected_pids=guard.protected_pids - {os.getpid()})
        assert stack.proc is not None and stack.proc.pid in guard.protected_pids   # supervisord
        core = Responder(guard, None)
        stage = stack.pid("analyzer-0")
        now = time.time_ns()

        def forged(action: str, named: list[int], trigger: int) -> dict:
            return {"kind": "decision", "session_id": 999999, "ts_ns": now, "action": "ALERT",
                    "event": {}, "response": {"action": action, "dry_run": False, "rules": ["forged"],
                                              "trigger_tgid": trigger, "leader_tgid": agent.pid,
                                              "root": agent.pid, "tgids": [[p, now] for p in named]}}
        one = core.respond_map(forged("kill_process", [outsider.pid], outsider.pid))
        assert one["response"]["pids"] == []
        assert one["response"]["refused"] == [[outsider.pid, "outside the session tree"]]
        every = core.respond_map(forged("kill_session", [1, outsider.pid, stage, os.getpid()], 1))
        refused = dict(map(tuple, every["response"]["refused"]))
        assert refused == {1: "pid 1 or invalid", outsider.pid: "outside the session tree",
                           stage: "CASA process", os.getpid(): "outside the session tree"}
        assert every["response"]["pids"] == [agent.pid]     # only the anchor, a real agent tree
        assert outsider.poll() is None and stack.pid("analyzer-0") == stage
        assert stack.processes()["analyzer-0"].state == "RUNNING"
    finally:
        for p in (outsider, agent):
            if p.poll() is None:
                p.kill()
            p.wait()
