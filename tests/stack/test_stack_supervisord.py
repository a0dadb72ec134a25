"""The whole stack under real supervisord: start, detect, status, reload, shutdown.
(kill -9 of every stage under load: test_chaos.py; permissions: test_permissions.py.)

Each test builds its own sandboxed stack (tests/stack/stack.py) from the real supervisord.conf.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stack.stack import Stack

pytestmark = [pytest.mark.root, pytest.mark.stack, pytest.mark.timeout(240)]

# Writes a script into the working directory, then runs it: write_then_exec_same_path (5) +
# write_then_exec_from_suspicious_path (4) = 9 >= alert threshold 9 when the dir is under /tmp.
WRITE_THEN_EXEC = ("printf '#!/bin/sh\\necho hi\\n' > \"$PWD/helper.sh\"; chmod +x \"$PWD/helper.sh\"; "
                   "\"$PWD/helper.sh\"; true")


@pytest.fixture
def stack() -> Iterator[Stack]:
    with Stack() as st:
        yield st


def read_until_subscribed(tap: subprocess.Popen) -> str:
    """casa tap's stderr up to its readiness line (every stream heard from)."""
    assert tap.stderr is not None
    lines = []
    for line in iter(tap.stderr.readline, ""):
        lines.append(line)
        if line.startswith("casa tap: subscribed"):
            return "".join(lines)
    raise AssertionError("casa tap ended before it was subscribed: " + "".join(lines))


def _alerts_for(st: Stack, rule: str) -> list[dict]:
    return [r for r in st.log("alert.log")
            if any(t.get("name") == rule for t in r.get("decision", {}).get("triggered_rules", []))]


def test_start_detect_status_and_shutdown(stack: Stack) -> None:
    tap = subprocess.Popen([sys.executable, "-m", "cli", "tap", "--bus-dir", str(stack.bus_dir),
                            "--topic", "analyzer.decision", "-n", "1", "-d", "60"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=stack.work)
    seen_err = read_until_subscribed(tap)         # the tap's subscription is live: no sleep
    done = stack.run_agent(WRITE_THEN_EXEC)
    assert done.returncode == 0 and "hi" in done.stdout, done.stderr
    line, err = tap.communicate(timeout=60)
    err = seen_err + err
    seen = json.loads(line)
    assert (seen["topic"], seen["stream"], seen["event"]["action"]) == ("analyzer.decision", "analyzer-0", "ALERT"), err
    alert = stack.wait_for_log("alert.log", lambda r: any(
        t.get("name") == "write_then_exec_same_path" for t in r["decision"]["triggered_rules"]))
    assert alert["decision"]["action"] == "ALERT"
    assert stack.wait_for_log("audit.log", lambda r: r["session_id"] == alert["session_id"])
    status = stack.casa("status", "--url", stack.url)
    assert status.returncode == 0, status.stdout + status.stderr
    for name in stack.names():
        assert f"\n{name:<14}RUNNING" in "\n" + status.stdout
    # Ctrl-C: everything stops cleanly, in order, and open sessions get a shutdown snapshot.
    agent = stack.start_agent("cat /etc/hostname > /dev/null; exec sleep 60")
    try:
        stack.wait_for_log("events.log", lambda r: r.get("pid") == agent.pid and r["type"] == "OPENAT")
        assert stack.stop() == 0
    finally:
        agent.kill()
        agent.wait()
    sessions = stack.log("sessions.log")
    assert any(r["reason"] == "shutdown" for r in sessions), sessions[-3:]
    for name in stack.names():
        assert "stopped" in stack.stage_log(name).lower() or name == "sinks-otel", stack.stage_log(name)[-500:]


def _version(path: Path) -> str:
    import hashlib
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def test_reload_valid_then_invalid_without_restart_or_loss(stack: Stack) -> None:
    pids = {n: stack.pid(n) for n in stack.names()}
    # 150 execs spread over ~3 s, across both reloads: none may be lost.
    agent = stack.start_agent("for i in $(seq 150); do /bin/true reload-$i; sleep 0.02; done")
    stack.wait_for_log("events.log", lambda r: r["type"] == "EXECVE" and r.get("args", [""])[-1] == "reload-1")
    data = json.loads(stack.rules.read_text())
    data["rules"][0]["weight"] += 1
    stack.rules.write_text(json.dumps(data, indent=2))
    new_version = _version(stack.rules)
    ok = stack.casa("reload", "--pid-file", str(stack.pid_file))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "sessionizer: ok (applied" in ok.stdout
    assert "analyzer-0: ok (applied" in ok.stdout
    assert f"version={new_version}" in stack.stage_log("analyzer-0")
    stack.rules.write_text("{ not json")
    bad = stack.casa("reload", "--pid-file", str(stack.pid_file))
    assert bad.returncode == 1
    assert "analyzer-0: ERROR (rejected: old config kept" in bad.stderr
    assert "sessionizer: ERROR (rejected: old config kept" in bad.stderr
    for name in ("sessionizer", "analyzer-0"):
        assert "not valid JSON" in stack.stage_log(name), stack.stage_log(name)[-800:]
    typo = json.loads(json.dumps(data))       # valid JSON, but a rule names a field that does not exist
    typo["rules"][0]["expr"] = "execution.memfd_exec"
    stack.rules.write_text(json.dumps(typo, indent=2))
    bad = stack.casa("reload", "--pid-file", str(stack.pid_file))
    assert bad.returncode == 1 and "analyzer-0: ERROR (rejected: old config kept" in bad.stderr
    assert "names execution.memfd_exec, which is not a context field" in stack.stage_log("analyzer-0")
    assert agent.wait(30) == 0
    assert {n: stack.pid(n) for n in stack.names()} == pids          # nobody restarted
    closed = stack.wait_for_log("sessions.log", lambda r: r["reason"] == "session_closed" and any(
        e.get("pid") == agent.pid for e in r["session"].get("recent_events", [])) or False, timeout_s=30)
    execs = [r for r in stack.log("events.log") if r["type"] == "EXECVE"
             and r.get("args", [""])[-1].startswith("reload-")]
    assert sorted(int(r["args"][-1].split("-")[1]) for r in execs) == list(range(1, 151))
    assert closed["session"].get("complete", True) is True
    # The old (valid) rules are still in force: detection works.
    stack.run_agent(WRITE_THEN_EXEC)
    stack.wait_for_log("alert.log", lambda r: r["decision"]["rules_version"] == new_version)


def test_two_analyzer_instances_under_supervisord() -> None:
    with Stack(analyzers=2) as st:
        for _ in range(3):                    # three sessions: both instances own at least one
            assert st.run_agent(WRITE_THEN_EXEC).returncode == 0
        st.wait_until(lambda: len(_alerts_for(st, "write_then_exec_same_path")) >= 3, 40, "three alerts")
        status = st.casa("status", "analyzer:*", "--url", st.url, "--json")
        assert status.returncode == 0, status.stderr
        rows = [json.loads(line) for line in status.stdout.splitlines()]
        assert [r["name"] for r in rows] == ["analyzer-0", "analyzer-1"]
        assert all(r["state"] == "RUNNING" and r["counters"].get("events_owned", 0) > 0 for r in rows), rows
