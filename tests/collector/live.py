"""Shared pieces of the live signal tests: one real collector per test module, trees run under a
test root, and the events of one tree.

    live = live_fixture("files")            # the module's ``live`` fixture

    def test_x(live):
        pid, facts = live.workload(SIGNALS, "chmods", live.fresh())
        assert live.tree(pid, "chmod", syscall="fchmod") == [...]

Every tree runs in its own directory under a scratch directory in /tmp whose real path (the
kernel reports dentry names) is what expected values are built from. ``workload`` waits for the
root's exit event, the tree's last, so every event of the tree has arrived.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.collector.harness import CollectorProcess, EventTap, running_collector

__all__ = ["Live", "live_collector", "strip", "SIGNALS", "EXECS", "COMMON"]

HERE = Path(__file__).resolve().parent
SIGNALS = HERE / "signal_workload.py"
EXECS = HERE / "exec_workload.py"
COMMON = ("kind", "ts_ns", "tgid", "tid", "ppid", "uid", "comm", "root")


@dataclass
class Live:
    col: CollectorProcess
    tap: EventTap
    root_bin: Path
    scratch: Path

    def fresh(self, *parts: str) -> Path:
        d = self.scratch.joinpath(uuid.uuid4().hex[:8], *parts)
        d.mkdir(parents=True)
        return d

    def run_root(self, script: str, timeout_s: float = 60, env: dict[str, str] | None = None
                 ) -> tuple[int, str]:
        """``<test root> -c script`` (``env`` added to its environment, which, unlike argv, no
        event carries); waits for the root's exit event; (pid, stdout)."""
        p = subprocess.Popen([str(self.root_bin), "-c", script], stdout=subprocess.PIPE,
                             env={**os.environ, **(env or {})})
        out, _ = p.communicate(timeout=timeout_s)
        self.tap.wait_for(lambda e: e["kind"] == "exit" and e["tgid"] == p.pid, timeout_s=20)
        return p.pid, os.fsdecode(out)

    def workload(self, module: Path, *args: str | Path, env: dict[str, str] | None = None
                 ) -> tuple[int, dict[str, Any]]:
        """Run ``python module args...`` as the tree's root process (exec'd by the test root)."""
        cmd = shlex.join([sys.executable, str(module), *map(str, args)])
        pid, out = self.run_root("exec " + cmd, env=env)
        return pid, json.loads(out) if out.strip() else {}

    def tree(self, pid: int, kind: str, **fields: Any) -> list[dict[str, Any]]:
        """Events of the tree rooted at ``pid`` of this kind (and these field values)."""
        return [e for e in self.tap.of(kind=kind, **fields) if e["root"] == pid]

    def own(self, pid: int, kind: str) -> list[dict[str, Any]]:
        """This kind's events of process ``pid`` without the common fields."""
        return [strip(e) for e in self.tap.of(kind=kind, tgid=pid)]

    def counters(self) -> dict[str, Any]:
        """Heartbeat counters that include every event received so far."""
        return self.tap.wait_heartbeat().counters


def strip(ev: dict[str, Any]) -> dict[str, Any]:
    """An event without its common fields (what a test compares exactly)."""
    return {k: v for k, v in ev.items() if k not in COMMON}


@contextmanager
def live_collector(factory: pytest.TempPathFactory, name: str) -> Iterator[Live]:
    tmp = factory.mktemp(name)
    scratch = Path(tempfile.mkdtemp(prefix=f"casa-{name}-", dir="/tmp")).resolve()
    try:
        with running_collector(tmp, ringbuf_pages=1024) as (col, tap, root_bin):
            yield Live(col, tap, root_bin, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def live_fixture(name: str) -> Any:
    """A module-scoped ``live`` fixture: one real collector for the whole test module, its
    scratch directories named after ``name``. Assign it to ``live`` at module level."""
    @pytest.fixture(scope="module")
    def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
        with live_collector(tmp_path_factory, name) as lv:
            yield lv
    return live
