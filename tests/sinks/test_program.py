"""The program sink's core with real child processes: lines appended by a real reader, a command
that exits after one line (restarted), one that cannot start, one that stops reading (killed
at the deadline), and no shell anywhere."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from bus.envelope import Envelope
from bus.topics import ANALYZER_DECISION
from sinks.notify import NotifySink
from sinks.notify_config import ProgramSettings
from sinks.program import ProgramPipe, build_program_sink
from tests.harness.polling import wait_for
from tests.sinks.sink_maps import exec_event, readme_decision

APPEND = """
import sys
out = sys.argv[1]
for line in sys.stdin.buffer:
    with open(out, "ab") as f:
        f.write(line)
"""
ONE_LINE = """
import sys
line = sys.stdin.buffer.readline()
with open(sys.argv[1], "ab") as f:
    f.write(line)
"""
NEVER_READS = """
import time
time.sleep(60)
"""


def script(tmp: Path, name: str, body: str) -> str:
    path = tmp / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def env(*decisions: dict[str, Any]) -> Envelope:
    return Envelope(ANALYZER_DECISION, "analyzer-0", 1, 1, 0, list(decisions))


def sink(argv: list[str], **kw: Any) -> NotifySink:
    settings = ProgramSettings(argv=tuple(argv), **{"restart_backoff_initial_s": 0.05,
                                                    "restart_backoff_max_s": 0.2, "deadline_s": 10.0, **kw})
    pipe = ProgramPipe(settings, dict(os.environ))
    return NotifySink(name="program", min_action=settings.min_action, deliverer=pipe,
                      queue_size=settings.queue_size, deadline_s=settings.deadline_s,
                      dcounters=pipe.counters, shutdown_wait_s=2.0).start()


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_bytes().splitlines()] if path.exists() else []


def test_each_decision_is_one_json_line_on_the_commands_stdin(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    s = sink([sys.executable, script(tmp_path, "append.py", APPEND), str(out)])
    try:
        s.handle(env(readme_decision(session_id=1),
                     readme_decision(session_id=2, event=exec_event(path="/tmp/x\ny; rm -rf ~")),
                     readme_decision(session_id=3)))
        wait_for(lambda: len(lines(out)) == 3)
    finally:
        s.close()
    got = lines(out)
    assert [g["session_id"] for g in got] == [1, 2, 3]
    assert got[1]["record"]["event"]["path"] == "/tmp/x\ny; rm -rf ~"     # data, never a command
    c = s.counters()
    assert c["notify_delivered"] == 3 and c["notify_restarts"] == 0 and s.resolved() == (3,)


def test_a_command_that_dies_is_restarted_and_gets_the_next_line(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    s = sink([sys.executable, script(tmp_path, "one.py", ONE_LINE), str(out)])
    try:
        for i in range(1, 4):
            s.handle(env(readme_decision(session_id=i)))
            wait_for(lambda: len(lines(out)) == i)
            pipe = s.deliverer
            assert isinstance(pipe, ProgramPipe) and pipe.proc is not None
            pipe.proc.wait(timeout=10)                        # it exited after its line
    finally:
        s.close()
    assert [g["session_id"] for g in lines(out)] == [1, 2, 3]
    c = s.counters()
    assert c["notify_restarts"] == 2 and c["notify_delivered"] == 3 and c["notify_gave_up"] == 0


def test_a_command_that_cannot_start_is_retried_until_the_deadline_and_counted(tmp_path: Path) -> None:
    s = sink([str(tmp_path / "missing")], deadline_s=0.8)
    try:
        s.handle(env(readme_decision()))
        wait_for(lambda: s.counters()["notify_gave_up"] == 1)
    finally:
        s.close()
    assert s.counters()["notify_attempt_failures"] >= 2 and s.resolved() == (1,)


def test_a_command_that_stops_reading_is_killed_at_the_deadline(tmp_path: Path) -> None:
    s = sink([sys.executable, script(tmp_path, "never.py", NEVER_READS)], deadline_s=1.5)
    big = readme_decision(event=exec_event(argv=["x" * 60_000] * 4))    # more than a pipe holds
    try:
        s.handle(env(big))
        pid = wait_for(lambda: isinstance(s.deliverer, ProgramPipe) and s.deliverer.proc and s.deliverer.proc.pid)
        wait_for(lambda: s.counters()["notify_gave_up"] == 1, timeout_s=10)
    finally:
        s.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)                                      # killed and reaped, not left behind
    assert s.counters()["notify_unread_at_exit"] == 0        # the cut line is given up, not "unread"


def test_the_command_does_not_see_the_webhook_secret(tmp_path: Path) -> None:
    out = tmp_path / "env.txt"
    dump = script(tmp_path, "dump.py", """
        import os, sys
        sys.stdin.buffer.readline()
        open(sys.argv[1], "w").write("\\n".join(sorted(os.environ)))
    """)
    s = build_program_sink(ProgramSettings(argv=(sys.executable, dump, str(out))), ("CASA_WEBHOOK_SECRET",),
                           {"CASA_WEBHOOK_SECRET": "fake", "PATH": "/usr/bin", "KEEP_ME": "1"})
    try:
        s.handle(env(readme_decision()))
        names = wait_for(lambda: out.exists() and out.read_text().split("\n"))
    finally:
        s.close()
    assert "KEEP_ME" in names and "CASA_WEBHOOK_SECRET" not in names


def test_lines_a_command_died_without_reading_are_counted_lost(tmp_path: Path) -> None:
    """A command that fails at start (here: exits after 0.3 s, reading nothing) is not silent."""
    s = sink([sys.executable, "-c", "import sys, time; time.sleep(0.3); sys.exit(3)"])
    pipe = s.deliverer
    assert isinstance(pipe, ProgramPipe)
    try:
        for sid in (1, 2):
            s.handle(env(readme_decision(session_id=sid)))
            wait_for(lambda: s.counters()["notify_delivered"] == sid)     # written into its pipe ...
            proc = pipe.proc
            assert proc is not None
            proc.wait(timeout=10)                                     # ... and it died unread
    finally:
        s.close()
    c = s.counters()
    assert c["notify_unread_at_exit"] == 2 and c["notify_restarts"] == 1


def test_lines_a_command_read_are_not_counted_unread(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    s = sink([sys.executable, script(tmp_path, "one.py", ONE_LINE), str(out)])
    try:
        s.handle(env(readme_decision(session_id=1)))
        wait_for(lambda: len(lines(out)) == 1)
        pipe = s.deliverer
        assert isinstance(pipe, ProgramPipe) and pipe.proc is not None
        pipe.proc.wait(timeout=10)
    finally:
        s.close()
    assert s.counters()["notify_unread_at_exit"] == 0
