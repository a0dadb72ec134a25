"""The state file ``$CASA_STATE_DIR/sessionizer.json``: id reservations and restart checkpoints.

One JSON document, a stage.state_file.StateFile (replaced atomically: a temporary file, fsync,
rename; an unusable one is set aside)::

    {"version": 1, "id_reserved_until": 2049, "tree_id_reserved_until": 1025, "saved_ns": ...,
     "checkpoint": {"tracker": {...}, "sessions": [...], "next_id": 97, "clean": false,
                    "bus": [{"stream": "collector", "topic": "collector.event",
                             "epoch": ..., "seq": ...}, ...]}}

``bus`` is ``bus.SequenceTracker.positions()``, as the analyzer and the sinks write it. Files
written before that hold ``{"collector.event": {"epoch": ..., "seq": ...}, ...}`` instead;
:func:`input_positions` reads both (stage.state_file.read_positions), so the version stays 1.

Session ids below ``id_reserved_until`` (tree ids below ``tree_id_reserved_until``: their own
sequence, so that session ids stay consecutive and both spread evenly over ``% N``) may have been
handed out, so a restarted sessionizer starts there: ids are never reused, even after a crash (at most one reserved block is skipped).
Without a state file (first start, a state directory on tmpfs after a reboot, a corrupt file) ids
start at the wall clock in milliseconds, which is above every id handed out before as long as
fewer than one session per millisecond was opened. The same holds when the file cannot be written
(no state directory, wrong owner); restart recovery is then off, and this is logged. A corrupt
file is set aside as ``sessionizer.json.corrupt``, not trusted.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from stage.options import DEFAULT_STATE_DIR
from stage.state_file import StateFile, read_positions

__all__ = ["StateStore", "STATE_VERSION", "DEFAULT_STATE_DIR", "state_dir", "input_positions",
           "SESSION_IDS", "TREE_IDS"]

STATE_VERSION = 1
SESSION_IDS, TREE_IDS = "id_reserved_until", "tree_id_reserved_until"   # reservations, by kind
FILE_NAME = "sessionizer.json"

log = logging.getLogger("casa.sessionizer.state")


def state_dir() -> Path:
    return Path(os.environ.get("CASA_STATE_DIR", DEFAULT_STATE_DIR))


def input_positions(checkpoint: dict[str, Any], stream: str = "collector") -> list[dict[str, Any]]:
    """The checkpoint's input positions in ``SequenceTracker.restore_positions`` form. The
    older per-topic map (all of ``stream``) is converted; ValueError for any damaged entry."""
    return [{"stream": s, "topic": t, "epoch": st.epoch, "seq": st.last_seq}
            for (s, t), st in read_positions(checkpoint.get("bus"), stream).items()]


class StateStore:
    """Loads and saves the state document; remembers whether saving works at all."""

    def __init__(self, directory: Path | None = None) -> None:
        self.path = (directory or state_dir()) / FILE_NAME
        self.file = StateFile(self.path, STATE_VERSION, "sessionizer state file",
                              "ids derive from the clock and restart recovery is off")
        self.doc: dict[str, Any] = {"version": STATE_VERSION, "id_reserved_until": 1}
        self.writable = True
        self.fresh = True              # no usable state file was found

    @property
    def save_failures(self) -> int:
        return self.file.write_failures

    def load(self) -> dict[str, Any]:
        """Read the document (a fresh one if there is none or it is unusable)."""
        raw = self.file.load()
        if raw is None:
            return self.doc
        if not isinstance(raw.get("id_reserved_until"), int):
            log.error("state file has an unknown layout; starting without a checkpoint | path=%s",
                      self.path)
            self.file.set_aside()
            return self.doc
        self.doc = raw
        self.fresh = False
        return self.doc

    def first_id(self, key: str = SESSION_IDS) -> int:
        """Where the ids of ``key`` (session ids, or tree ids) continue: the reservation, else
        the clock in milliseconds (also for a file written before that key existed)."""
        clock_ms = time.time_ns() // 1_000_000
        known = key in self.doc
        start = int(self.doc.get(key, 1))
        if not self.save():
            log.warning("cannot write the state file: ids derive from the clock (ms) and "
                        "restart recovery is off | path=%s ids=%s", self.path, key)
            return max(start, clock_ms)
        if self.fresh or not known:
            log.info("no reservation in the state file: ids start at the clock (ms) "
                     "| path=%s ids=%s first_id=%d", self.path, key, clock_ms)
            return max(start, clock_ms)
        return start

    def reserve(self, upto: int, key: str = SESSION_IDS) -> None:
        """Persist that ids of ``key`` below ``upto`` may be used (SessionIds calls this before
        using them)."""
        self.doc[key] = max(int(upto), int(self.doc.get(key, 1)))
        self.save()

    def reserve_trees(self, upto: int) -> None:
        self.reserve(upto, TREE_IDS)

    def checkpoint(self, state: dict[str, Any]) -> bool:
        self.doc["checkpoint"] = state
        return self.save()

    def save(self) -> bool:
        """Atomically replace the file; False (and counted) on failure, and from then on: a
        directory that refused once is not written again (the ids then derive from the clock)."""
        if not self.writable:
            return False
        self.doc["version"] = STATE_VERSION
        self.doc["saved_ns"] = time.time_ns()
        if not self.file.write(self.doc):
            self.writable = False
            return False
        return True
