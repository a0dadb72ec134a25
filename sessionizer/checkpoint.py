"""The state file ``$CASA_STATE_DIR/sessionizer.json``: id reservations and restart checkpoints.

One JSON document, replaced atomically (write a temporary file, fsync, rename)::

    {"version": 1, "id_reserved_until": 129, "tree_id_reserved_until": 65, "saved_ns": ...,
     "checkpoint": {"tracker": {...}, "sessions": [...], "next_id": 97, "clean": false,
                    "bus": [{"stream": "collector", "topic": "collector.event",
                             "epoch": ..., "seq": ...}, ...]}}

``bus`` is ``bus.SequenceTracker.positions()``, as the analyzer and the sinks write it. Files
written before that hold ``{"collector.event": {"epoch": ..., "seq": ...}, ...}`` instead;
:func:`input_positions` reads both, so the version stays 1.

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

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

__all__ = ["StateStore", "STATE_VERSION", "DEFAULT_STATE_DIR", "state_dir", "input_positions",
           "SESSION_IDS", "TREE_IDS"]

STATE_VERSION = 1
DEFAULT_STATE_DIR = "/var/lib/casa"
SESSION_IDS, TREE_IDS = "id_reserved_until", "tree_id_reserved_until"   # reservations, by kind
FILE_NAME = "sessionizer.json"

log = logging.getLogger("casa.sessionizer.state")


def state_dir() -> Path:
    return Path(os.environ.get("CASA_STATE_DIR", DEFAULT_STATE_DIR))


def input_positions(checkpoint: dict[str, Any], stream: str = "collector") -> list[dict[str, Any]]:
    """The checkpoint's input positions in ``SequenceTracker.restore_positions`` form. The
    older per-topic map (all of ``stream``) is converted; ValueError for any other layout."""
    raw = checkpoint.get("bus")
    if raw is None:
        return []
    if isinstance(raw, list):
        return [item for item in raw if isinstance(item, dict)]
    if isinstance(raw, dict):
        return [{"stream": stream, "topic": topic, "epoch": int(pos["epoch"]), "seq": int(pos["seq"])}
                for topic, pos in raw.items()]
    raise ValueError(f"checkpoint bus positions have an unknown layout: {type(raw).__name__}")


class StateStore:
    """Loads and saves the state document; remembers whether saving works at all."""

    def __init__(self, directory: Path | None = None) -> None:
        self.path = (directory or state_dir()) / FILE_NAME
        self.doc: dict[str, Any] = {"version": STATE_VERSION, "id_reserved_until": 1}
        self.writable = True
        self.save_failures = 0
        self.fresh = True              # no usable state file was found

    def load(self) -> dict[str, Any]:
        """Read the document (a fresh one if there is none or it is unusable)."""
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return self.doc
        except (OSError, ValueError) as exc:
            log.error("state file unusable; starting without a checkpoint | path=%s reason=%s",
                      self.path, exc)
            self._set_aside()
            return self.doc
        if not isinstance(raw, dict) or raw.get("version") != STATE_VERSION \
                or not isinstance(raw.get("id_reserved_until"), int):
            log.error("state file has an unknown layout; starting without a checkpoint | path=%s",
                      self.path)
            self._set_aside()
            return self.doc
        self.doc = raw
        self.fresh = False
        return self.doc

    def _set_aside(self) -> None:
        try:
            self.path.replace(self.path.with_name(FILE_NAME + ".corrupt"))
        except OSError:
            pass

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
        """Atomically replace the file; False (and counted) on failure."""
        if not self.writable and self.save_failures:
            return False
        self.doc["version"] = STATE_VERSION
        self.doc["saved_ns"] = time.time_ns()
        tmp = self.path.with_name(FILE_NAME + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            text = json.dumps(self.doc, separators=(",", ":"))   # one C call; json.dump
            with open(tmp, "w", encoding="utf-8") as f:             # writes chunk by chunk
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            if self.writable:
                log.warning("cannot save the state file | path=%s reason=%s", self.path, exc)
            self.writable = False
            self.save_failures += 1
            return False
        return True
