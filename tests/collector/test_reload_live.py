"""SIGHUP: new profiles take effect at once (a new root comm is recognised in the kernel), an
invalid file keeps the old ones, and every HUP sends one reload request downstream, in order."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.collector.harness import running_collector

pytestmark = pytest.mark.root


def run(binary: Path) -> int:
    p = subprocess.Popen([str(binary), "-c", "true"])
    p.wait(30)
    return p.pid


def test_reload_applies_new_profiles_and_keeps_old_ones_on_error(tmp_path: Path):
    with running_collector(tmp_path) as (col, tap, root_bin):
        late = tmp_path / "casa-late-root"
        shutil.copy2(root_bin, late)
        before = run(late)
        first = run(root_bin)
        tap.wait_for(lambda e: e["kind"] == "exit" and e["tgid"] == first)
        assert not [e for e in tap.events if e.get("tgid") == before]

        data = json.loads(col.config.read_text())
        data["profiles"].append({"name": "late", "kind": "invocation", "match": [{"comm": ["casa-late-root"]}]})
        col.config.write_text(json.dumps(data))
        col.signal(signal.SIGHUP)
        _wait_control(tap, 1)
        applied = _next_counters(tap)
        assert (applied["reloads_applied"], applied["reloads_rejected"]) == (1, 0)
        assert applied["config_version"] == hashlib.sha256(col.config.read_bytes()).hexdigest()[:12]
        after = run(late)
        root = tap.wait_for(lambda e: e["kind"] == "root" and e["tgid"] == after)
        assert root["profile"] == "late"

        col.config.write_text("{not json")
        col.signal(signal.SIGHUP)
        _wait_control(tap, 2)
        rejected = _next_counters(tap)          # casa reload reads these: the failure is visible
        assert (rejected["reloads_applied"], rejected["reloads_rejected"]) == (1, 1)
        assert rejected["config_version"] == applied["config_version"]      # the old one stays
        again = run(late)                      # the old (second) profile set still applies
        assert tap.wait_for(lambda e: e["kind"] == "root" and e["tgid"] == again)["profile"] == "late"
        assert "reload failed, keeping the 2 profiles loaded" in col.log()
        assert [c["id"] for c in tap.controls] == [1, 2]


def _next_counters(tap) -> dict:
    """The counters of the first heartbeat sent after what the tap has seen so far."""
    tap.drain()
    return dict(tap.wait_heartbeat().counters)


def _wait_control(tap, ident: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not any(c["id"] == ident for c in tap.controls):
        assert time.monotonic() < deadline, f"no reload request {ident} within {timeout_s} s"
        if not tap.drain():
            time.sleep(0.01)
