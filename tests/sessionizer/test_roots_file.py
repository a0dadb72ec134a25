"""The roots file behind `casa status`'s AGENT ROOTS: what it says, that it is bounded, written
only on change, atomically, and that a failure to write it never stops the stage."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sessionizer import roots_file
from sessionizer.core import Sessionizer
from sessionizer.roots_file import RootsFile, roots_snapshot

from tests.sessionizer.synthetic_events import CLI, GATEWAY, S, T0, Events


def test_the_snapshot_lists_each_root_with_its_open_sessions(gateway_core: Sessionizer, ev: Events) -> None:
    snap = roots_snapshot(gateway_core.tracker, gateway_core.sessions)
    assert snap["roots_total"] == 1
    (gw,) = snap["roots"]
    assert (gw["tgid"], gw["profile"], gw["bootstrap"], gw["open_sessions"]) == \
        (GATEWAY, "openclaw-gateway", True, 0)
    assert gw["since_ns"] == T0 and gw["exe"] == "/usr/bin/node"
    gateway_core.handle(ev.root(CLI, 1, "openclaw-cli", reason="exec", ts=10, comm="node",
                                argv=["node", "/opt/oc/openclaw.mjs", "agent", "-m", "hi"]), T0 + 10 * S)
    gateway_core.handle(ev.exec(CLI + 1, CLI, "/bin/ls", ["ls"], ts=10.5), T0 + 10 * S)
    snap = roots_snapshot(gateway_core.tracker, gateway_core.sessions)
    assert [(r["tgid"], r["profile"]) for r in snap["roots"]] == [(GATEWAY, "openclaw-gateway"), (CLI, "openclaw-cli")]
    assert snap["roots"][1]["open_sessions"] == 1 and snap["roots"][1]["bootstrap"] is False


def test_the_file_is_bounded(core: Sessionizer, ev: Events, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(roots_file, "MAX_ROOTS", 5)
    for i in range(12):
        core.handle(ev.root(5000 + i, 1, "openclaw-gateway", ts=i), T0 + i * S)
    snap = roots_snapshot(core.tracker, core.sessions)
    assert snap["roots_total"] == 12 and len(snap["roots"]) == 5
    assert [r["tgid"] for r in snap["roots"]] == [5000, 5001, 5002, 5003, 5004]     # the oldest


def test_written_atomically_only_on_change_and_removed_at_stop(tmp_path: Path, gateway_core: Sessionizer) -> None:
    f = RootsFile(tmp_path / roots_file.FILE_NAME, pid=4321)
    snap = roots_snapshot(gateway_core.tracker, gateway_core.sessions)
    assert f.update(snap, 7) is True
    doc = json.loads(f.path.read_text())
    assert doc["sessionizer_pid"] == 4321 and doc["written_ns"] == 7 and doc["roots"] == snap["roots"]
    assert f.path.stat().st_mode & 0o777 == 0o640
    assert f.update(dict(snap), 8) is False and json.loads(f.path.read_text())["written_ns"] == 7
    assert [p.name for p in tmp_path.iterdir()] == [roots_file.FILE_NAME]     # no temp file left
    f.remove()
    assert not f.path.exists()


def test_an_unwritable_place_is_logged_once_and_never_raises(tmp_path: Path, gateway_core: Sessionizer,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    f = RootsFile(tmp_path / "missing-dir" / roots_file.FILE_NAME)
    snap = roots_snapshot(gateway_core.tracker, gateway_core.sessions)
    assert f.update(snap, 1) is False and f.update(snap, 2) is False
    assert f.write_failures == 2
    assert sum("cannot write the roots file" in r.getMessage() for r in caplog.records) == 1


def test_a_planted_symlink_is_not_followed(tmp_path: Path, gateway_core: Sessionizer) -> None:
    target = tmp_path / "victim"
    target.write_text("keep")
    os.symlink(target, tmp_path / (roots_file.FILE_NAME + ".tmp"))
    f = RootsFile(tmp_path / roots_file.FILE_NAME)
    assert f.update(roots_snapshot(gateway_core.tracker, gateway_core.sessions), 1) is False
    assert target.read_text() == "keep"
