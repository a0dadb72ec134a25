"""casa sessions over logs the real jsonl sink wrote: columns, order, filters, JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.logs import LogReader, LogSet
from cli.sessionlog import summaries
from cli.sessions import select
from tests.cli.log_writer import S, T0, attack_session, benign_session, log_only_session, write_logs
from tests.harness.casa_cli import casa

CHECKOUT = Path(__file__).resolve().parents[2]


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    write_logs(tmp_path, attack_session(25, T0) + benign_session(26, T0 + 100 * S)
               + log_only_session(27, T0 + 200 * S) + attack_session(28, T0 + 300 * S, leader=700))
    return tmp_path


def test_rows_are_newest_first_with_every_column(logs: Path) -> None:
    out = casa("sessions", "--log-dir", str(logs), "--color", "never")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["ID", "PROFILE", "LEADER", "START", "DURATION", "EVENTS", "SCORE",
                                "ACTION", "COMPLETE"]
    assert [int(line.split()[0]) for line in lines[1:]] == [28, 27, 26, 25]
    row25 = lines[-1].split()
    start = time.strftime("%m-%d %H:%M", time.localtime(T0 // S)).split()
    assert row25 == ["25", "openclaw-cli", "100", *start, "8.0s", "7", "9", "ALERT", "yes"]
    row27 = lines[2].split()
    assert row27[0] == "27" and row27[-4:] == ["5", "LOG", "no", "(loss)"] and row27[5].endswith("+")  # open
    assert "\x1b" not in out.stdout                          # no colour into a pipe
    assert all(len(line) < 80 for line in lines if "(loss)" not in line)


def test_action_filters_exact_and_at_least(logs: Path) -> None:
    rows = list(summaries(LogReader(), LogSet.resolve(logs)).values())
    assert [s.session_id for s in select(rows, action="ALERT")] == [28, 25]
    assert [s.session_id for s in select(rows, action="LOG")] == [27]
    assert [s.session_id for s in select(rows, min_action="LOG")] == [28, 27, 25]
    assert [s.session_id for s in select(rows, min_action="IGNORE")] == [28, 27, 26, 25]
    assert [s.session_id for s in select(rows, limit=2)] == [28, 27]
    # --since: active (last event or close) at or after the cut
    assert [s.session_id for s in select(rows, since_ns=T0 + 200 * S)] == [28, 27]
    out = casa("sessions", "--log-dir", str(logs), "--action", "alert", "--limit", "1")
    assert [line.split()[0] for line in out.stdout.splitlines()[1:]] == ["28"]


def test_since_is_measured_from_now(tmp_path: Path) -> None:
    now = time.time_ns()
    write_logs(tmp_path, attack_session(1, now - 3600 * S) + attack_session(2, now - 60 * S, leader=300))
    out = casa("sessions", "--log-dir", str(tmp_path), "--since", "10m")
    assert [line.split()[0] for line in out.stdout.splitlines()[1:]] == ["2"]
    out = casa("sessions", "--log-dir", str(tmp_path), "--since", "2h")
    assert [line.split()[0] for line in out.stdout.splitlines()[1:]] == ["2", "1"]


def test_json_is_one_object_per_session(logs: Path) -> None:
    out = casa("sessions", "--log-dir", str(logs), "--json", "--min-action", "LOG")
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["session_id"] for r in rows] == [28, 27, 25]
    r = rows[-1]
    assert (r["profile"], r["leader"], r["events"], r["score"], r["action"], r["complete"]) == \
        ("openclaw-cli", 100, 7, 9, "ALERT", True)
    assert r["rules"] == ["write_then_exec_same_path", "write_then_exec_from_suspicious_path"]
    assert r["start_ns"] == T0 and r["duration_s"] == 8.0 and r["closed"] is True


def test_a_session_known_only_from_its_events_and_decision_is_listed(tmp_path: Path) -> None:
    """Still open and never flushed: no sessions.log line, yet it is there, with its verdict."""
    msgs = attack_session(40, T0)
    write_logs(tmp_path, msgs[:3])                      # opened, events, decision: no snapshot
    (s,) = summaries(LogReader(), LogSet.resolve(tmp_path)).values()
    assert (s.session_id, s.events, s.score, s.action, s.complete, s.closed) == (40, 7, 9, "ALERT", None, False)
    assert s.start_ns == T0 and s.end_ns == T0 + 6 * S


def test_bad_arguments_and_no_logs(tmp_path: Path) -> None:
    assert casa("sessions", "--since", "soon").returncode == 2
    assert casa("sessions", "--action", "PANIC").returncode == 2
    assert casa("sessions", "--action", "LOG", "--min-action", "LOG").returncode == 2
    out = casa("sessions", "--log-dir", str(tmp_path / "none"))
    assert out.returncode == 0 and "no session matched" in out.stderr
    assert "sessions" in casa("help", "sessions").stdout


def test_colour_only_when_asked_or_on_a_terminal(logs: Path) -> None:
    assert "\x1b[1;31mALERT" in casa("sessions", "--log-dir", str(logs), "--color", "always").stdout
    env = {"NO_COLOR": "1", "PATH": "/usr/bin:/bin"}
    assert "\x1b" not in casa("sessions", "--log-dir", str(logs), env=env).stdout


def test_logs_the_user_may_not_read_are_an_error_not_an_empty_list(tmp_path: Path) -> None:
    write_logs(tmp_path / "logs", attack_session(25, T0))
    os.chmod(tmp_path / "logs", 0o750)                     # root:root here: nobody may not enter
    os.chmod(tmp_path, 0o755)
    out = subprocess.run([sys.executable, "-m", "cli", "sessions", "--log-dir", str(tmp_path / "logs")],
                         capture_output=True, text=True, timeout=60, cwd=CHECKOUT, user="nobody")
    assert out.returncode == 1 and "permission denied" in out.stderr, out.stderr
