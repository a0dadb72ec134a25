"""Frozen sessions: what ``freeze_session`` stopped, and resuming it (``casa thaw``).

The responder writes one small file per frozen session in the state directory
(``frozen-<session_id>.json``: the anchor and each stopped process as ``[pid, start_ticks]``).
``casa thaw`` reads it, and resumes only what is *still* that process: the same pid with the same
start time, still stopped, still below the anchor, and never a CASA process (the same checks as
the freeze, responder/targets.py). The file is written by the ``casa`` user, so it is a claim,
never trusted alone: a pid it names that fails any check is refused, not continued.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from responder.procfs import ProcInfo, Snapshot
from responder.signals import Sender
from responder.targets import Guard, Request, refusal

__all__ = ["FrozenSession", "frozen_path", "save", "load", "thaw"]


@dataclass(slots=True)
class FrozenSession:
    session_id: int
    anchor: int
    root: int
    procs: list[tuple[int, int]]          # (pid, start_ticks)
    frozen_ns: int = 0

    def as_map(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "anchor": self.anchor, "root": self.root,
                "procs": [list(p) for p in self.procs], "frozen_ns": self.frozen_ns}


@dataclass(slots=True)
class ThawResult:
    resumed: list[int] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def frozen_path(state_dir: Path, session_id: int) -> Path:
    return state_dir / f"frozen-{session_id}.json"


def save(state_dir: Path, frozen: FrozenSession) -> Path:
    """Write atomically (a reader never sees half a file)."""
    path = frozen_path(state_dir, frozen.session_id)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(frozen.as_map()))
    os.replace(tmp, path)
    return path


def load(state_dir: Path, session_id: int) -> FrozenSession:
    """Read a frozen session; ValueError (with why) when the file is not usable."""
    raw = json.loads(frozen_path(state_dir, session_id).read_text())
    procs = raw.get("procs")
    if not isinstance(procs, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(type(x) is int for x in p) for p in procs):
        raise ValueError("procs is not a list of [pid, start_ticks]")
    ints = [raw.get(k) for k in ("session_id", "anchor", "root")]
    if not all(type(x) is int for x in ints):
        raise ValueError("session_id, anchor and root must be integers")
    return FrozenSession(ints[0], ints[1], ints[2], [(p[0], p[1]) for p in procs],
                         raw.get("frozen_ns", 0) if type(raw.get("frozen_ns")) is int else 0)


def thaw(frozen: FrozenSession, snap: Snapshot, guard: Guard, sender: Sender) -> ThawResult:
    """SIGCONT every recorded process that is still the one that was frozen."""
    req = Request(session_id=frozen.session_id, action="freeze_session", trigger_tgid=0,
                  anchor=frozen.anchor, root=frozen.root, first_seen={}, event_ts_ns=0)
    out = ThawResult()
    for pid, start in frozen.procs:
        info = snap.procs.get(pid)
        why = refusal(pid, snap, guard, req, None)
        if why is None and info is not None and info.start_ticks != start:
            why = "recycled pid (another process now)"
        if why is None and info is not None and info.state not in ("T", "t"):
            why = "not stopped"
        if why is not None or info is None:
            out.refused.append((pid, why or "gone"))
            continue
        err = sender.send(ProcInfo(pid, info.ppid, info.uid, info.state, start, info.comm),
                          signal.SIGCONT)
        if err is None:
            out.resumed.append(pid)
        else:
            out.errors.append(f"{pid}: {err}")
    return out
