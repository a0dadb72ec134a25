"""The agent roots being watched, published as a small state file for `casa status`.

A person running an agent needs to see that CASA watches *their* agent: which agent processes
(roots) the sessionizer tracks, for whom, since when, with how many sessions open. Heartbeat
counters are a flat map of numbers (docs/bus.md §8.2), so the list goes to a file instead:
``$CASA_BUS_DIR/sessionizer.roots.json`` (the bus directory: root:casa 0770 on a tmpfs, so the
monitored user can neither read nor forge it, and it goes away with a reboot like the state it
describes). Written atomically (rename), only when its content changed and at most once a
second (on the heartbeat), at most :data:`MAX_ROOTS` roots (the oldest first; ``roots_total``
says how many there are). Never on the per-event path.

    {"version": 1, "sessionizer_pid": 812, "written_ns": ..., "roots_total": 1,
     "roots": [{"tgid": 4000, "profile": "openclaw-gateway", "uid": 1000, "since_ns": ...,
                "tree_id": 3, "exe": "/usr/bin/node", "bootstrap": false, "open_sessions": 1}]}
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sessionizer.sessions import SessionTable
from sessionizer.tracker import Tracker

__all__ = ["FILE_NAME", "MAX_ROOTS", "roots_snapshot", "RootsFile"]

log = logging.getLogger("casa.sessionizer")

FILE_NAME = "sessionizer.roots.json"
MAX_ROOTS = 256          # bounded: a fork bomb of CLI invocations must not make a huge file
MAX_EXE = 512            # characters of an executable path kept


def roots_snapshot(tracker: Tracker, sessions: SessionTable) -> dict[str, Any]:
    """The roots and their open-session counts (without the write time: compared for change)."""
    open_by_root = Counter(s.tree_root for s in sessions)
    roots = sorted(tracker.roots.values(), key=lambda r: (r.seen_ns, r.tgid))
    items = [{"tgid": r.tgid, "profile": r.profile, "uid": r.uid, "since_ns": r.seen_ns,
              "tree_id": r.tree_id, "exe": r.exe[:MAX_EXE] if isinstance(r.exe, str) else "",
              "bootstrap": r.bootstrap_ns is not None, "open_sessions": open_by_root.get(r.tgid, 0)}
             for r in roots[:MAX_ROOTS]]
    return {"version": 1, "roots_total": len(roots), "roots": items}


@dataclass(slots=True)
class RootsFile:
    """Writes the snapshot when it changed. Failures are logged once and counted, never raised:
    a status file must not stop the stage."""

    path: Path
    pid: int = 0
    _last: dict[str, Any] | None = None
    write_failures: int = 0

    def update(self, snapshot: dict[str, Any], now_ns: int) -> bool:
        """Write ``snapshot`` if it differs from the last one written; True if written."""
        if snapshot == self._last:
            return False
        doc = {**snapshot, "sessionizer_pid": self.pid or os.getpid(), "written_ns": now_ns}
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o640)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f, ensure_ascii=True, separators=(",", ":"))
            os.replace(tmp, self.path)
        except OSError as exc:
            self.write_failures += 1
            if self.write_failures == 1:
                log.error("cannot write the roots file; casa status will not list the agent roots "
                          "| path=%s error=%s", self.path, exc)
            return False
        self._last = snapshot
        return True

    def remove(self) -> None:
        """At a clean stop: no file rather than a stale one."""
        try:
            self.path.unlink()
        except OSError:
            pass
