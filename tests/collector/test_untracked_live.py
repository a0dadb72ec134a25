"""Untracked processes stay invisible: every syscall of the detection signals, and the execs with
odd fds and LD_* variables, made by processes outside any agent tree, produce no event at all.

The same workloads the live signal tests run inside a tree run here as plain children of the test
(untracked), with a collector attached. Then a tracked tree runs; its exit event is the proof that
everything published before it has arrived. Every event received meanwhile must belong to it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.collector.live import EXECS, SIGNALS, live_fixture
from tests.collector.signal_workload import UNTRACKED

pytestmark = pytest.mark.root
EXEC_ACTIONS = ("stdio_cases", "pty_spawn_over_socket", "env_cases")


live = live_fixture("untracked")


def test_untracked_processes_produce_no_events(live):
    start = len(live.tap.events)
    for action, *args in UNTRACKED:
        p = subprocess.run([sys.executable, str(SIGNALS), action, str(live.fresh()), *args],
                           capture_output=True, text=True, timeout=120,
                           env={"CASA_TEST_QNAME": "untracked.example", "PATH": "/usr/bin:/bin"})
        assert p.returncode == 0, (action, p.stderr)
    for action in EXEC_ACTIONS:
        p = subprocess.run([sys.executable, str(EXECS), action, str(live.fresh())],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, (action, p.stderr)
    tracked, _ = live.run_root("/bin/true after-untracked")
    assert live.tap.of(kind="exec", tgid=tracked)            # the tracked tree was seen
    stray = [e for e in live.tap.events[start:] if e.get("root") != tracked]
    assert stray == []
