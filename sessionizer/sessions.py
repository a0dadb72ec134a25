"""Sessions: the units of analysis, their lifecycle, and the timers that close them.

Two ways a session opens (see docs/sessionizer.md §Session model):

* **invocation**: a process matched by an ``invocation`` profile (``openclaw agent … -m``) opens
  a session at its exec; the session holds the process's whole descendant tree and closes
  ``close_grace_s`` after that leader process exits (the original's CLI window, 2 s).
* **activity**: an accepted event of a tree that has no open session (the gateway running a turn
  that no CLI started; a tree left behind after its invocation session closed) opens one; it
  closes after ``idle_gap_s`` without accepted events.

Timers are driven by the ``now`` passed in (event time, ns); nothing here reads a clock. A closing
session still accepts events up to and including ``grace_until_ns`` (the original expires a session
when ``now > GraceUntil``); its ``closed_ns`` is ``grace_until_ns``. An idle session's
``closed_ns`` is its last event time plus the idle gap.

Session ids come from :class:`SessionIds`: positive, increasing, never reused across restarts
(blocks of ids are reserved in the state file before they are handed out).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["SessionState", "Origin", "Session", "SessionIds", "SessionTable", "lifecycle",
           "ID_BLOCK", "NS_PER_S"]

NS_PER_S = 1_000_000_000
ID_BLOCK = 64                 # ids reserved per write of the state file


class SessionState(enum.Enum):
    OPEN = "open"             # accepting events
    CLOSING = "closing"       # leader exited; still accepting events until grace_until_ns
    CLOSED = "closed"         # final; removed from the table once announced


class Origin(enum.Enum):
    INVOCATION = "invocation"  # opened by the exec of an invocation-profile root
    ACTIVITY = "activity"      # opened by an accepted event of a tree without an open session


@dataclass(slots=True)
class Session:
    session_id: int
    profile: str
    origin: Origin
    tree_root: int            # tgid of the root whose tree opened it
    leader_tgid: int          # invocation: the CLI process; activity: the tree root
    created_ns: int
    updated_ns: int
    idle_gap_ns: int
    close_grace_ns: int
    state: SessionState = SessionState.OPEN
    grace_until_ns: int | None = None
    closed_ns: int | None = None
    event_count: int = 0
    lost_events: int = 0
    complete: bool = True

    def to_state(self) -> dict[str, Any]:
        d = asdict(self)
        d["origin"], d["state"] = self.origin.value, self.state.value
        return d

    @classmethod
    def from_state(cls, raw: dict[str, Any]) -> "Session":
        d = dict(raw)
        d["origin"], d["state"] = Origin(d["origin"]), SessionState(d["state"])
        return cls(**d)


def lifecycle(s: Session, state: str, ts_ns: int) -> dict[str, Any]:
    """The ``sessionizer.session`` map for ``s`` (docs/bus.md): opened|flushed|closed|shutdown."""
    return {
        "kind": "session", "state": state, "session_id": s.session_id, "profile": s.profile,
        "leader_tgid": s.leader_tgid, "created_ns": s.created_ns, "updated_ns": s.updated_ns,
        "closed_ns": s.closed_ns, "complete": s.complete, "lost_events": s.lost_events,
        "origin": s.origin.value, "event_count": s.event_count, "ts_ns": ts_ns,
    }


class SessionIds:
    """Monotonic ids. ``reserve(upto)`` must persist ``upto`` before ids below it are used."""

    def __init__(self, next_id: int = 1, reserve: Callable[[int], None] | None = None) -> None:
        self.next_id = max(int(next_id), 1)
        self.reserved_until = self.next_id          # ids < reserved_until may be handed out
        self._reserve = reserve

    def allocate(self) -> int:
        if self.next_id >= self.reserved_until:
            upto = self.next_id + ID_BLOCK
            if self._reserve is not None:
                self._reserve(upto)
            self.reserved_until = upto
        sid = self.next_id
        self.next_id += 1
        return sid


class SessionTable:
    """The open sessions, indexed by id and by tree root."""

    def __init__(self, ids: SessionIds | None = None) -> None:
        self.ids = ids or SessionIds()
        self.sessions: dict[int, Session] = {}

    def __len__(self) -> int:
        return len(self.sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self.sessions.values()))

    def open(self, *, profile: str, origin: Origin, tree_root: int, leader_tgid: int, ts_ns: int,
             idle_gap_s: float, close_grace_s: float) -> Session:
        s = Session(session_id=self.ids.allocate(), profile=profile, origin=origin,
                    tree_root=tree_root, leader_tgid=leader_tgid, created_ns=ts_ns, updated_ns=ts_ns,
                    idle_gap_ns=int(idle_gap_s * NS_PER_S), close_grace_ns=int(close_grace_s * NS_PER_S))
        self.sessions[s.session_id] = s
        return s

    def for_root(self, tree_root: int) -> Session | None:
        """The newest not-closed session opened by this tree root."""
        best = None
        for s in self.sessions.values():
            if s.tree_root == tree_root and s.state is not SessionState.CLOSED:
                if best is None or s.session_id > best.session_id:
                    best = s
        return best

    def latest_invocation(self) -> Session | None:
        """The most recently opened invocation session still open or in its grace period."""
        best = None
        for s in self.sessions.values():
            if s.origin is Origin.INVOCATION and s.state is not SessionState.CLOSED:
                if best is None or s.session_id > best.session_id:
                    best = s
        return best

    @staticmethod
    def record(s: Session, ts_ns: int) -> None:
        """An accepted event joined ``s``."""
        s.event_count += 1
        s.updated_ns = max(s.updated_ns, ts_ns)

    def leader_exit(self, tgid: int, ts_ns: int) -> list[Session]:
        """The leader of invocation sessions exited: OPEN -> CLOSING, grace timer starts."""
        hit = []
        for s in self.sessions.values():
            if s.origin is Origin.INVOCATION and s.leader_tgid == tgid and s.state is SessionState.OPEN:
                s.state = SessionState.CLOSING                     # OPEN -> CLOSING
                s.grace_until_ns = ts_ns + s.close_grace_ns
                hit.append(s)
        return hit

    def expire(self, now_ns: int) -> list[Session]:
        """Close what is due at ``now_ns``; the closed sessions leave the table (in id order)."""
        done = []
        for s in sorted(self.sessions.values(), key=lambda x: x.session_id):
            if s.state is SessionState.CLOSING and s.grace_until_ns is not None and now_ns > s.grace_until_ns:
                s.closed_ns = s.grace_until_ns                     # CLOSING -> CLOSED
            elif (s.state is SessionState.OPEN and s.origin is Origin.ACTIVITY
                  and now_ns > s.updated_ns + s.idle_gap_ns):
                s.closed_ns = s.updated_ns + s.idle_gap_ns          # OPEN -> CLOSED (idle)
            else:
                continue
            s.state = SessionState.CLOSED
            done.append(s)
            del self.sessions[s.session_id]
        return done

    def mark_loss(self, count: int) -> list[Session]:
        """Events were lost: every session open now may miss some of them. Returns the sessions
        that were complete until now (their first loss)."""
        newly = []
        for s in self.sessions.values():
            if s.state is not SessionState.CLOSED:
                if s.complete:
                    newly.append(s)
                s.complete = False
                s.lost_events += max(int(count), 0)
        return newly
