"""The state file: id reservations survive restarts, a corrupt file is set aside, no directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from sessionizer.checkpoint import StateStore
from sessionizer.sessions import ID_BLOCK, SessionIds


def _ids(store: StateStore) -> SessionIds:
    store.load()
    return SessionIds(store.first_id(), reserve=store.reserve)


def test_ids_continue_after_a_crash_and_are_never_reused(tmp_path):
    first = _ids(StateStore(tmp_path))
    used = [first.allocate() for _ in range(3)]
    assert used[0] >= time.time_ns() // 1_000_000 - 60_000          # fresh: starts at the clock
    again = _ids(StateStore(tmp_path))                                 # "crash": no shutdown hook
    nxt = again.allocate()
    assert nxt > used[-1] and nxt == used[0] + ID_BLOCK


def test_checkpoint_round_trip_keeps_reservation(tmp_path):
    store = StateStore(tmp_path)
    ids = _ids(store)
    ids.allocate()
    assert store.checkpoint({"sessions": [], "tracker": {"procs": [], "roots": []}, "clean": True})
    doc = StateStore(tmp_path).load()
    assert doc["checkpoint"]["clean"] is True and doc["id_reserved_until"] == ids.reserved_until


@pytest.mark.parametrize("content", ["{ not json", json.dumps({"version": 99}), json.dumps([1])])
def test_corrupt_state_is_set_aside(tmp_path, content):
    (tmp_path / "sessionizer.json").write_text(content)
    store = StateStore(tmp_path)
    assert "checkpoint" not in store.load() and store.fresh
    assert (tmp_path / "sessionizer.json.corrupt").read_text() == content


UNWRITABLE_CHECK = """
import sys, time
from pathlib import Path
from sessionizer.checkpoint import StateStore
store = StateStore(Path(sys.argv[1]) / "state")
store.load()
assert store.first_id() >= time.time_ns() // 1_000_000 - 60_000 and not store.writable
"""


def test_unwritable_directory_falls_back_to_clock_ids():
    """In a process that cannot write the directory: as root (CI), that process runs as nobody."""
    ro = Path(tempfile.mkdtemp(prefix="casa-ro-"))        # under /tmp: nobody can reach it
    as_nobody = {"user": "nobody", "group": "nogroup", "extra_groups": []} if os.geteuid() == 0 else {}
    try:
        ro.chmod(0o555)
        out = subprocess.run([sys.executable, "-c", UNWRITABLE_CHECK, str(ro)], cwd="/", capture_output=True,
                             text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
                             timeout=60, **as_nobody)
        assert out.returncode == 0, out.stderr
    finally:
        shutil.rmtree(ro, ignore_errors=True)


def test_missing_parent_that_cannot_be_created_falls_back_to_clock_ids(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = StateStore(blocker / "state")                 # a path below a regular file
    store.load()
    assert store.first_id() >= time.time_ns() // 1_000_000 - 60_000 and not store.writable
    assert store.checkpoint({"sessions": []}) is False


def test_input_positions_read_the_bus_layout_and_the_older_per_topic_map():
    from bus.sequence import SequenceTracker
    from sessionizer.checkpoint import input_positions
    tracker = SequenceTracker()
    tracker.observe("collector", "collector.event", 7, 41)
    current = {"bus": tracker.positions()}                       # what the stage writes now
    older = {"bus": {"collector.event": {"epoch": 7, "seq": 41}}}  # what it wrote before
    for checkpoint in (current, older):
        restored = SequenceTracker()
        assert restored.restore_positions(input_positions(checkpoint)) == 1
        assert restored.observe("collector", "collector.event", 7, 44) == 2   # 42 and 43 missed
    assert input_positions({}) == []
    with pytest.raises(ValueError):
        input_positions({"bus": "collector.event"})
