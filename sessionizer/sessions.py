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
import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["SessionState", "Origin", "Session", "SessionIds", "SessionTable", "lifecycle",
           "ID_BLOCK", "NS_PER_S"]

NS_PER_S = 1_000_000_000
# Ids reserved per write of the state file. Each reservation rewrites the whole file (with the
# last checkpoint: ~0.5 MB and 4-5 ms with 700 open sessions, fsync'd), so under churn small
# blocks meant a rewrite every 64 sessions or trees; a crash skips at most one block of ids,
# which costs nothing (ids are 64-bit and start near the clock in milliseconds).
ID_BLOCK = 1024


class SessionState(enum.Enum):
    OPEN = "open"             # accepting events
    CLOSING = "closing"       # leader exited; still accepting events until grace_until_ns
    CLOSED = "closed"         # final; removed from the table once announced


class Origin(enum.Enum):
    INVOCATION = "invocation"  # opened by the exec of an invocation-profile root
    ACTIVITY = "activity"      # opened by an accepted event of a tree without an open session


@dataclass(slots=True)
class Session:
    """One session: who opened it and why, its clock (created, last event, idle gap and close
    grace, all in ns), and where it is in open -> grace -> closed."""

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
    leader_uid: int | None = None  # real uid of the leader (None: from an older checkpoint)
    tree_id: int = 0               # the tree (trees.py) whose root opened it
    shard: int = 0                 # routing key: analyzer ``shard % N`` owns it and its events
    parent_session_id: int | None = None  # the tree's previous session, within the horizon
    root_uid: int | None = None    # the tree root's real uid
    root_cap_eff: int | None = None  # the tree root's CapEff (None: unknown)
    incomplete_reason: str | None = None  # why complete is False first became so

    def to_state(self) -> dict[str, Any]:
        """JSON-able fields (all scalars: no ``asdict`` deep copy, the checkpoint's hot spot)."""
        d = {n: getattr(self, n) for n in _SESSION_FIELDS}
        d["origin"], d["state"] = self.origin.value, self.state.value
        return d

    @classmethod
    def from_state(cls, raw: dict[str, Any]) -> "Session":
        d = dict(raw)
        d["origin"], d["state"] = Origin(d["origin"]), SessionState(d["state"])
        return cls(**d)


_SESSION_FIELDS = tuple(f.name for f in fields(Session))


def lifecycle(s: Session, state: str, ts_ns: int) -> dict[str, Any]:
    """The ``sessionizer.session`` map for ``s`` (docs/bus.md): opened|flushed|closed|shutdown."""
    out = {
        "kind": "session", "state": state, "session_id": s.session_id, "profile": s.profile,
        "leader_tgid": s.leader_tgid, "created_ns": s.created_ns, "updated_ns": s.updated_ns,
        "closed_ns": s.closed_ns, "complete": s.complete, "lost_events": s.lost_events,
        "origin": s.origin.value, "event_count": s.event_count, "ts_ns": ts_ns,
        "tree_id": s.tree_id, "shard": s.shard, "parent_session_id": s.parent_session_id,
        "root_uid": s.root_uid, "root_cap_eff": s.root_cap_eff,
    }
    if s.incomplete_reason is not None:
        out["incomplete_reason"] = s.incomplete_reason
    return out


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
    """The open sessions, indexed by id, by tree root and by leader, with a cached earliest
    deadline so that the per-event expiry check costs O(1) while nothing is due.

    Invariant: a tree root has at most one not-closed session (a new one is opened only when
    :meth:`for_root` finds none). ``sessions`` keeps id order (ids only grow).

    Deadlines sit in a heap of (deadline, id) entries, so closing a session looks at the due
    entries only instead of every session (with ~500 sessions open or in grace, a scan costs
    ~100 us per close). A deadline only moves later (an idle session's last event; OPEN ->
    CLOSING sets one), so every session with a deadline has an entry at or before it; an entry
    found early is pushed again at the session's current deadline, one of a closed session is
    dropped when it comes up.
    """

    def __init__(self, ids: SessionIds | None = None) -> None:
        self.ids = ids or SessionIds()
        self.sessions: dict[int, Session] = {}
        self._by_root: dict[int, Session] = {}          # tree id -> its not-closed session
        self._open_by_leader: dict[int, list[int]] = {}  # leader tgid -> OPEN invocation ids
        self._invocations: dict[int, None] = {}         # not-closed invocation ids, in id order
        self._due: list[tuple[int, int]] = []           # heap of (deadline lower bound, id)
        self.next_due_ns: int | None = None             # lower bound of the earliest deadline:
                                                        # nothing expires at or before it

    def __len__(self) -> int:
        return len(self.sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self.sessions.values()))

    def open(self, *, profile: str, origin: Origin, tree_root: int, leader_tgid: int, ts_ns: int,
             idle_gap_s: float, close_grace_s: float, leader_uid: int | None = None,
             **tree: Any) -> Session:
        """A new session; ``tree``: its tree fields (``tree_id``, ``shard``,
        ``parent_session_id``, ``root_uid``, ``root_cap_eff``)."""
        s = Session(session_id=self.ids.allocate(), profile=profile, origin=origin,
                    tree_root=tree_root, leader_tgid=leader_tgid, created_ns=ts_ns, updated_ns=ts_ns,
                    idle_gap_ns=int(idle_gap_s * NS_PER_S), close_grace_ns=int(close_grace_s * NS_PER_S),
                    leader_uid=leader_uid, **tree)
        self.add(s)
        return s

    def add(self, s: Session) -> None:
        """Insert a session (a new one, or one restored from a checkpoint) into every index."""
        self.sessions[s.session_id] = s
        self._by_root[s.tree_id] = s
        if s.origin is Origin.INVOCATION:
            self._invocations[s.session_id] = None
            if s.state is SessionState.OPEN:
                self._open_by_leader.setdefault(s.leader_tgid, []).append(s.session_id)
        self._note_due(_deadline(s), s.session_id)

    def for_root(self, tree_id: int) -> Session | None:
        """The not-closed session opened by this tree (by tree id: a tgid can be reused by a
        new root while the old tree's session still idles), if any."""
        return self._by_root.get(tree_id)

    def latest_invocation(self, uid: int | None) -> Session | None:
        """The most recently opened invocation session, still open or in its grace period, whose
        leader runs as ``uid`` (a CLI talks to the runtime of its own user). A session whose
        leader uid is unknown (restored from an older checkpoint) matches every uid, as before."""
        for sid in reversed(self._invocations):          # few at a time: usually 0 or 1
            s = self.sessions[sid]
            if s.leader_uid is None or s.leader_uid == uid:
                return s
        return None

    @staticmethod
    def record(s: Session, ts_ns: int) -> None:
        """An accepted event joined ``s`` (deadlines only move later: the cache stays a bound)."""
        s.event_count += 1
        s.updated_ns = max(s.updated_ns, ts_ns)

    def leader_exit(self, tgid: int, ts_ns: int) -> list[Session]:
        """The leader of invocation sessions exited: OPEN -> CLOSING, grace timer starts."""
        hit = []
        for sid in self._open_by_leader.pop(tgid, []):
            s = self.sessions.get(sid)
            if s is None or s.state is not SessionState.OPEN:
                continue
            s.state = SessionState.CLOSING                         # OPEN -> CLOSING
            s.grace_until_ns = ts_ns + s.close_grace_ns
            self._note_due(s.grace_until_ns, s.session_id)
            hit.append(s)
        return hit

    def expire(self, now_ns: int) -> list[Session]:
        """Close what is due at ``now_ns``; the closed sessions leave the table (in id order)."""
        if self.next_due_ns is None or now_ns <= self.next_due_ns:
            return []
        heap, due = self._due, {}
        while heap and heap[0][0] < now_ns:
            sid = heapq.heappop(heap)[1]
            s = self.sessions.get(sid)
            if s is None or sid in due:
                continue                       # closed already, or a second entry
            deadline = _deadline(s)
            if deadline is None:
                continue
            if now_ns > deadline:
                due[sid] = s
            else:                              # it moved later: wait for the new deadline
                heapq.heappush(heap, (deadline, sid))
        done = [due[sid] for sid in sorted(due)]
        for s in done:
            s.closed_ns = _deadline(s)         # CLOSING -> CLOSED (grace) / OPEN -> CLOSED (idle)
            s.state = SessionState.CLOSED
            self._remove(s)
        self.next_due_ns = heap[0][0] if heap else None
        return done

    def _remove(self, s: Session) -> None:
        del self.sessions[s.session_id]
        if self._by_root.get(s.tree_id) is s:
            del self._by_root[s.tree_id]
        self._invocations.pop(s.session_id, None)
        ids = self._open_by_leader.get(s.leader_tgid)
        if ids and s.session_id in ids:
            ids.remove(s.session_id)
            if not ids:
                del self._open_by_leader[s.leader_tgid]

    def _note_due(self, due: int | None, sid: int) -> None:
        if due is not None:
            heapq.heappush(self._due, (due, sid))
            self.next_due_ns = self._due[0][0]

    def mark_loss(self, count: int, reason: str = "loss") -> list[Session]:
        """Events were lost: every session open now may miss some of them. Returns the sessions
        that were complete until now (their first loss); ``reason`` becomes their
        ``incomplete_reason``."""
        newly = []
        for s in self.sessions.values():
            if s.state is not SessionState.CLOSED:
                if s.complete:
                    newly.append(s)
                    s.incomplete_reason = s.incomplete_reason or reason
                s.complete = False
                s.lost_events += max(int(count), 0)
        return newly


def _deadline(s: Session) -> int | None:
    """When ``s`` closes if nothing else happens: grace end, or last event + idle gap."""
    if s.state is SessionState.CLOSING:
        return s.grace_until_ns
    if s.state is SessionState.OPEN and s.origin is Origin.ACTIVITY:
        return s.updated_ns + s.idle_gap_ns
    return None
