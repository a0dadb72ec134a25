"""casa status / sessions / explain on the real stack: the agent root is listed while it runs (and
a warning when there is none), an agent's write->exec of a file named to forge terminal lines
ALERTs, and `casa sessions --action ALERT` and `casa explain ID` tell it from the real logs."""

from __future__ import annotations

import json
import re

import pytest

from tests.collector.harness import TEST_PROFILE
from tests.stack.stack import CHECKOUT, Stack

pytestmark = [pytest.mark.root, pytest.mark.stack, pytest.mark.timeout(240)]

# The payload's name holds a newline, a forged verdict line and an escape sequence.
NAME = r"$'h\nverdict: IGNORE \e[2J.sh'"
ATTACK = (f"f=\"$PWD\"/{NAME}; printf '#!/bin/sh\\necho hi\\n' > \"$f\"; chmod +x \"$f\"; \"$f\"; true")
ESCAPED = r"h\nverdict: IGNORE \x1b[2J.sh"


def _roots(st: Stack) -> dict:
    out = st.casa("status", "sessionizer", "--url", st.url, "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    (row,) = [json.loads(line) for line in out.stdout.splitlines()]
    return row


def test_status_sessions_and_explain_on_the_real_stack() -> None:
    with Stack() as st:
        idle = st.wait_until(lambda: (r := _roots(st))["agent_roots_warning"].startswith("no agent root") and r,
                             30, "the sessionizer's roots file (no root yet)")
        assert idle["agent_roots"] == [] and idle["agent_roots_total"] == 0
        assert "WARNING: no agent root is tracked" in st.casa("status", "--url", st.url).stdout

        agent = st.start_agent("sleep 60")
        row = st.wait_until(lambda: (r := _roots(st))["agent_roots"] and r, 30, "the agent root listed")
        (root,) = row["agent_roots"]
        assert (root["tgid"], root["profile"], root["user"]) == (agent.pid, TEST_PROFILE, "nobody")
        text = st.casa("status", "--url", st.url).stdout
        line = next(ln for ln in text.splitlines() if ln.startswith(TEST_PROFILE))
        assert line.split()[1:3] == [str(agent.pid), "nobody"] and "WARNING" not in text
        agent.kill()

        assert st.run_agent(ATTACK).returncode == 0
        alert = st.wait_for_log("alert.log", lambda r: "write_then_exec_same_path" in
                                [t["name"] for t in r["decision"]["triggered_rules"]], 40)
        sid = alert["session_id"]
        st.wait_for_log("sessions.log", lambda r: r["session_id"] == sid and r["reason"] == "session_closed", 40)

        listed = st.casa("sessions", "--log-dir", str(st.log_dir), "--action", "ALERT")
        assert listed.returncode == 0, listed.stderr
        row = next(ln.split() for ln in listed.stdout.splitlines()[1:] if ln.split()[0] == str(sid))
        assert row[1] == TEST_PROFILE and row[-2:] == ["ALERT", "yes"] and int(row[-3]) >= 9
        assert int(row[-4]) >= 3                                  # events: write, chmod, exec, ...
        none = st.casa("sessions", "--log-dir", str(st.log_dir), "--action", "LOG")
        assert str(sid) not in [ln.split()[0] for ln in none.stdout.splitlines()[1:]]

        out = st.casa("explain", str(sid), "--log-dir", str(st.log_dir), "--color", "always")
        assert out.returncode == 0, out.stderr
        plain = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout)
        assert "\x1b" not in plain                                # only our own colours were there
        lines = plain.splitlines()
        assert lines[0].startswith(f"session {sid}  profile {TEST_PROFILE}")
        assert "the session's leader: its own start opened the session" in plain
        assert [ln.split()[:2] for ln in lines if ln.startswith("verdict:")] == [["verdict:", "ALERT"]]
        assert not any(ln.startswith("verdict: IGNORE") for ln in lines)
        weight = next(r["weight"] for r in json.loads((CHECKOUT / "rules.json").read_text())["rules"]
                      if r["name"] == "write_then_exec_same_path")
        assert f"▶ rule write_then_exec_same_path  +{weight}" in plain
        evidence = plain[plain.index("history.write_then_exec_same_path because:"):]
        assert re.search(r"pid \d+  OPENAT  \S*" + re.escape(ESCAPED), evidence)
        assert re.search(r"pid \d+  EXECVE  \S*" + re.escape(ESCAPED), evidence)
        timeline = plain[plain.index("\ntimeline"):plain.index("\nverdict")]
        assert re.search(r"OPENAT +\S*" + re.escape(ESCAPED) + r"  \(write\)", timeline)

        x = json.loads(st.casa("explain", str(sid), "--log-dir", str(st.log_dir), "--json").stdout)
        assert x["verdict"]["action"] == "ALERT" and x["verdict"]["complete"] is True
        refs = next(r for r in x["rules"] if r["name"] == "write_then_exec_same_path")["evidence"]
        assert [ref["type"] for ref in refs["history.write_then_exec_same_path"]] == ["OPENAT", "EXECVE"]
        assert refs["history.write_then_exec_same_path"][1]["path"].endswith("h\nverdict: IGNORE \x1b[2J.sh")
        assert x["session"]["events"] == len(x["timeline"]) >= 3
