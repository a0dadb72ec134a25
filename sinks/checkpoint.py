"""Where each analyzer stream was read up to, kept across sink restarts.

``$CASA_STATE_DIR/sinks-<kind>.json`` holds the last (epoch, seq) the sink handled per analyzer
(stream, topic). It is written atomically (temp file + rename) at most every
``SAVE_INTERVAL_S`` while messages arrive, and at SIGTERM; it is read once at start and put into
the subscriber's sequence tracker, so the first message after a restart shows exactly how many
messages were published while the sink was down (``lost_messages``), instead of the restart
hiding them. A kill -9 can lose up to ``SAVE_INTERVAL_S`` of positions; those messages are then
counted as lost although they were written: the count errs on the side of loss, never silence.
Sessions that were open across the restart are first seen mid-way and marked incomplete.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from bus.sequence import SequenceTracker, parse_positions

__all__ = ["PositionStore", "SAVE_INTERVAL_S", "FORMAT_VERSION"]

FORMAT_VERSION = 1
SAVE_INTERVAL_S = 0.25

log = logging.getLogger("casa.sinks")


class PositionStore:
    """Saves and restores a sink's input positions at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.failed = False          # warn once, then stay quiet until a save works again

    def save(self, tracker: SequenceTracker, clean: bool = False) -> bool:
        doc = {"v": FORMAT_VERSION, "clean": clean,
               "bus": tracker.positions()}
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(doc, separators=(",", ":")))
            os.replace(tmp, self.path)
        except OSError as exc:
            if not self.failed:
                log.warning("cannot write the sink checkpoint; loss during a restart will not be "
                            "counted | path=%s reason=%s", self.path, exc.strerror or exc)
            self.failed = True
            return False
        self.failed = False
        return True

    def restore(self, tracker: SequenceTracker) -> int:
        """Put the saved positions into ``tracker``; return how many (0 when none are usable)."""
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            log.warning("ignored an unreadable sink checkpoint | path=%s reason=%s", self.path, exc)
            return 0
        try:
            positions = _positions(doc)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("ignored a damaged sink checkpoint | path=%s reason=%s", self.path, exc)
            return 0
        tracker.streams.update(positions)
        log.info("restored input positions from checkpoint | path=%s positions=%d clean=%s",
                 self.path, len(positions), doc.get("clean") is True)
        return len(positions)


def _positions(doc: Any) -> dict[tuple[str, str], Any]:
    """Parse every entry before any is used: a damaged file changes nothing."""
    if not isinstance(doc, dict) or doc.get("v") != FORMAT_VERSION:
        raise ValueError("not a sink checkpoint of this format")
    return parse_positions(doc["bus"])
