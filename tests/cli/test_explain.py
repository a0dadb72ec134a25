"""casa explain over logs the real jsonl sink wrote: tree, timeline, rules with running score and
evidence, verdict, JSON; a path the agent chose cannot forge lines or drive the terminal."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bus import to_bytes
from cli.explanation import explain
from cli.logs import LogReader, LogSet
from tests.cli.log_writer import S, T0, LogWriter, attack_session, benign_session, log_only_session, write_logs
from tests.harness.casa_cli import casa as run_casa

CHECKOUT = Path(__file__).resolve().parents[2]
EVIL = b"/tmp/x\n  +9.000s      1  EXECVE   /bin/true\nverdict: IGNORE \x1b[2J\x1b]0;owned\x07\xff\xe2\x80\xae.sh"


def casa(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """casa with odd bytes kept (the paths here are not UTF-8 on purpose)."""
    return run_casa(*args, env=env, errors="surrogateescape")


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    write_logs(tmp_path, benign_session(26, T0 - 100 * S) + attack_session(25, T0)
               + log_only_session(27, T0 + 200 * S))
    return tmp_path


def test_the_tree_timeline_rules_and_verdict(logs: Path) -> None:
    out = casa("explain", "25", "--log-dir", str(logs), "--color", "never")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.startswith("session 25  profile openclaw-cli  leader 100  tree 7\n")
    tree = text[text.index("process tree"):text.index("timeline")].splitlines()[1:]
    assert tree[0].startswith("  100 /usr/bin/node  argv: node /usr/lib/node_modules/openclaw/openclaw.mjs agent")
    assert tree[1].startswith("  └─ 101 /bin/sh") and tree[2].startswith("     └─ 102 /tmp/x.sh")
    assert tree[3].startswith("        └─ 103 (curl, no exec seen)")
    timeline = text[text.index("timeline"):text.index("verdict")]
    assert re.search(r"\+2\.000s +101  OPENAT +/tmp/x\.sh  \(write\)", timeline)
    assert re.search(r"\+4\.000s +103  CONNECT +127\.0\.0\.1:8080", timeline)
    # the rules fire right after the exec they fired on, with the running score
    after_exec = timeline[timeline.index("102  EXECVE"):timeline.index("CONNECT")]
    assert "▶ rule write_then_exec_same_path  +5  score 5  -> LOG" in after_exec
    assert "▶ rule write_then_exec_from_suspicious_path  +4  score 9  -> ALERT" in after_exec
    first = after_exec[:after_exec.index("write_then_exec_from")]
    assert "history.write_then_exec_same_path because:" in first
    assert re.search(r"\+2\.000s  pid 101  OPENAT  /tmp/x\.sh", first)
    assert re.search(r"\+3\.000s  pid 102  EXECVE  /tmp/x\.sh", first)
    assert "execution.suspicious_path_exec" not in first       # not a field of that rule
    assert "execution.suspicious_path_exec because:" in after_exec
    verdict = text[text.index("verdict"):]
    assert verdict.startswith("verdict: ALERT  score 9 (log threshold 4, alert threshold 9)")
    assert "rules: write_then_exec_same_path, write_then_exec_from_suspicious_path" in verdict
    assert "INCOMPLETE" not in verdict


def test_json_for_machines(logs: Path) -> None:
    out = casa("explain", "25", "--log-dir", str(logs), "--json")
    x = json.loads(out.stdout)
    assert x["session"]["session_id"] == 25 and x["session"]["events"] == 7
    assert x["events_source"] == "events.log" and len(x["timeline"]) == 7
    assert [p["pid"] for p in x["processes"]] == [100] and x["processes"][0]["children"][0]["pid"] == 101
    assert [(r["name"], r["weight"], r["score_after"], r["action_after"]) for r in x["rules"]] == [
        ("write_then_exec_same_path", 5, 5, "LOG"), ("write_then_exec_from_suspicious_path", 4, 9, "ALERT")]
    refs = x["rules"][0]["evidence"]["history.write_then_exec_same_path"]
    assert [(r["pid"], r["type"], r["path"]) for r in refs] == [(101, "OPENAT", "/tmp/x.sh"), (102, "EXECVE", "/tmp/x.sh")]
    assert x["verdict"] == {"action": "ALERT", "score": 9, "log_threshold": 4, "alert_threshold": 9,
                            "rules_version": "0123456789ab",
                            "rules": ["write_then_exec_same_path", "write_then_exec_from_suspicious_path"],
                            "complete": True, "incomplete_reason": "", "lost_events": 0, "evidence_omitted": 0}


def test_a_malicious_path_cannot_forge_lines_or_drive_the_terminal(tmp_path: Path) -> None:
    write_logs(tmp_path, attack_session(25, T0, script=EVIL))
    out = casa("explain", "25", "--log-dir", str(tmp_path), "--color", "always")
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout)          # our own colours, nothing else
    assert "\x1b" not in plain and "\x07" not in plain and "\u202e" not in plain
    assert not any(line.startswith(("  +9.000s", "verdict: IGNORE")) for line in plain.splitlines())
    escaped = r"/tmp/x\n  +9.000s      1  EXECVE   /bin/true\nverdict: IGNORE \x1b[2J\x1b]0;owned\x07\xff\u202e.sh"
    assert plain.count(escaped) >= 5                           # tree, open, exec (path, argv), evidence
    assert plain.count("\nverdict: ") == 1
    # the JSON keeps the exact bytes
    x = json.loads(casa("explain", "25", "--log-dir", str(tmp_path), "--json").stdout)
    assert to_bytes(x["timeline"][2]["path"]) == EVIL


def test_colour_on_a_terminal_and_never_with_no_color(logs: Path) -> None:
    def on_tty(env: dict[str, str]) -> bytes:
        pid, fd = pty.fork()
        if pid == 0:                                           # the child: casa on the pty
            os.chdir(CHECKOUT)
            os.execve(sys.executable, [sys.executable, "-m", "cli", "explain", "25", "--log-dir", str(logs)], env)
        chunks = []
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.waitpid(pid, 0)
        return b"".join(chunks)
    base = {"PATH": "/usr/bin:/bin", "TERM": "xterm"}
    assert b"\x1b[1;31mALERT" in on_tty(base)
    assert b"\x1b[" not in on_tty({**base, "NO_COLOR": "1"})
    assert "\x1b" not in casa("explain", "25", "--log-dir", str(logs)).stdout     # a pipe


def test_an_incomplete_open_session_says_so(logs: Path) -> None:
    out = casa("explain", "27", "--log-dir", str(logs), "--color", "never").stdout
    assert "open (so far)" in out
    assert "INCOMPLETE (loss): the logs lack some of its events (3 known lost)" in out


def test_a_long_timeline_keeps_what_the_rules_cite(tmp_path: Path) -> None:
    msgs = attack_session(25, T0)
    noise = [{**msgs[1][1][0], "ts_ns": T0 + 2 * S + i, "path": f"/usr/bin/noise{i}", "argv": ["n"]}
             for i in range(1, 600)]
    writer = LogWriter(tmp_path)
    writer.send([msgs[0], ("analyzer.event", msgs[1][1][:3] + noise + msgs[1][1][3:]), *msgs[2:]])
    writer.close()
    out = casa("explain", "25", "--log-dir", str(tmp_path), "--color", "never", "--max-events", "20").stdout
    assert re.search(r"\.\.\. \d+ events not shown", out)
    assert "102  EXECVE" in out and "101  OPENAT" in out       # cited: kept
    assert out.count("/usr/bin/noise") < 30
    every = casa("explain", "25", "--log-dir", str(tmp_path), "--max-events", "0", "--color", "never").stdout
    assert every[every.index("\ntimeline"):].count("/usr/bin/noise") == 599


def test_the_explanation_reads_rotated_logs(tmp_path: Path) -> None:
    msgs = attack_session(25, T0)
    writer = LogWriter(tmp_path)
    writer.send(msgs[:2])
    writer.close()
    for name in ("events", "sessions", "audit", "alert"):
        if (tmp_path / f"{name}.log").exists():
            (tmp_path / f"{name}.log").rename(tmp_path / f"{name}.log.1")
    writer.reopen()
    writer.send(msgs[2:])
    writer.close()
    x = explain(LogReader(), LogSet.resolve(tmp_path), 25)
    assert x is not None and len(x.events) == 7 and [r.name for r in x.rules][0] == "write_then_exec_same_path"
    assert x.summary.action == "ALERT" and x.summary.complete is True


def test_an_unknown_session_is_an_error(logs: Path) -> None:
    out = casa("explain", "999", "--log-dir", str(logs))
    assert out.returncode == 1 and "no session 999" in out.stderr
    assert casa("explain", "abc").returncode == 2


def test_logs_from_before_events_had_a_session_id_fall_back_to_the_snapshot(tmp_path: Path) -> None:
    """An older sink wrote events.log without ``session_id``: the timeline is the snapshot's
    recent_events, and the verdict says so; the rules and evidence are whole."""
    msgs = attack_session(25, T0)
    recent = [{k: v for k, v in e.items() if k != "session_id"} for e in msgs[1][1]]
    closed = [{**msgs[3][1][0], "recent_events": recent}]
    write_logs(tmp_path, [msgs[0], msgs[1], msgs[2], ("analyzer.session", closed)])
    events = tmp_path / "events.log"
    events.write_bytes(re.sub(rb',"session_id":\d+\}\n', b"}\n", events.read_bytes()))   # the older format
    x = explain(LogReader(), LogSet.resolve(tmp_path), 25)
    assert x is not None and x.events_source == "recent_events" and len(x.events) == 7
    assert [p.pid for p in x.tree] == [100, 101, 102, 103]         # no ppid in recent_events: flat
    out = casa("explain", "25", "--log-dir", str(tmp_path), "--color", "never").stdout
    assert "timeline from the snapshot's recent_events only" in out and "verdict: ALERT" in out
    assert casa("sessions", "--log-dir", str(tmp_path)).stdout.splitlines()[1].split()[-4] == "-"   # events unknown
