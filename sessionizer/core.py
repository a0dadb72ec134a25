"""The pure sessionizer core: raw collector events in, session-tagged events and lifecycle out.

    core = Sessionizer(settings, endpoints)
    for topic, msg in core.handle(event, now_ns): publish(topic, msg)
    for topic, msg in core.tick(now_ns): publish(topic, msg)        # every poll-loop pass

No sockets, no clocks: ``now_ns`` is passed in (wall clock at receipt for ``handle``, wall clock
for ``tick``). Order of work per event (docs/original.md §6, adapted to several sessions):

1. validate (malformed events are counted and dropped; unknown kinds too, as ``unknown_kind``);
2. lifecycle first: ``root`` events and profile-matching execs outside every tree register roots
   (an invocation root opens its session); execs inside a tree get their role (execs.py,
   roles.py); forks add the child;
3. tree gate (the process or its parent is tracked);
4. the scoped noise filters (scoping.py): loader noise for anyone, runtime noise for the
   runtime's own image only; never an exec; a hidden write is kept with ``hidden``;
5. session attribution (may open an activity session, naming the tree's previous session as its
   parent; the runtime's own sessionless events are held, holding.py), enrichment (session_id,
   profile, depth, tree_id, shard, role; lineage for execs);
6. on exit: tracker removal and, for an invocation leader, the start of the 2 s grace.

Outputs are ``(topic, map)`` pairs in the order they must be published. Event maps keep their
wire form (non-UTF-8 text stays msgpack ``bin``); only added fields are new.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from bus.events import validate_event
from bus.topics import SESSIONIZER_EVENT, SESSIONIZER_SESSION
from bus.text import from_wire, to_wire
from sessionizer.execs import ExecHandling
from sessionizer.holding import Held, Holds
from sessionizer.lineage import build_lineage
from sessionizer.noise import NOT_KNOWN, RuntimeAnchors
from sessionizer.roles import AGENT, is_wrapper_argv
from sessionizer.scoping import EndpointMatcher, EventScoping, passwd_home, write_key
from sessionizer.sessions import NS_PER_S, Origin, Session, SessionIds, SessionTable, lifecycle
from sessionizer.settings import Settings
from sessionizer.tracker import Proc, Root, Tracker
from sessionizer.trees import TreeBook
from bus.events import known_kind, plainly_valid as _plainly_valid

__all__ = ["Sessionizer", "Out", "EndpointMatcher", "FLUSH_INTERVAL_S", "is_wrapper_argv"]

FLUSH_INTERVAL_S = 30.0
MAX_CLOCK_SKEW_NS = 10 * NS_PER_S    # never believe event clocks further than this from ours
LOG_FIRST_MALFORMED = 5
ANNOUNCE_DELAY_NS = NS_PER_S          # after a restart, downstream reconnects within ~0.1 s
# kinds that open a session even from the runtime's own image (never held as background): an
# exec is always published, and these are rare and say something whoever makes them
OPENING_KINDS = frozenset(("exec", "ptrace", "vm_read", "memfd", "setid", "capset", "socket",
                           "bind", "listen"))

Out = tuple[str, dict[str, Any]]

log = logging.getLogger("casa.sessionizer")


class _NoEndpoints:
    def matches(self, addr: str, port: int) -> bool:
        return False


class Sessionizer(EventScoping, ExecHandling):
    """Tracker + session table + gates. See the module docstring for the order of work.

    ``ids``, ``tree_ids``: the session-id and tree-id sequences (two, so that both stay
    consecutive: ids that alternated between sessions and trees would all have the same parity
    and land on one analyzer of two). ``home_of``: the real home of a uid (passwd by default;
    tests pass their own)."""

    def __init__(self, settings: Settings, endpoints: EndpointMatcher | None = None,
                 ids: SessionIds | None = None, flush_interval_s: float = FLUSH_INTERVAL_S,
                 home_of: Callable[[int | None], str | None] = passwd_home,
                 tree_ids: SessionIds | None = None) -> None:
        self.settings = settings
        self.endpoints = endpoints or _NoEndpoints()
        self.tracker = Tracker()
        self.sessions = SessionTable(ids)
        self.tree_ids = tree_ids or SessionIds()
        self.trees = TreeBook()
        self.flush_interval_ns = int(flush_interval_s * NS_PER_S)
        self.dropped: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()
        self._skew_ns = 0                 # our clock minus event clock, from the last event
        self._next_flush_ns: int | None = None
        self.structure_changed = False    # a root or session appeared: worth a checkpoint now
        self._announce: list[Out] = []    # lifecycle messages held back after a restore ...
        self._announce_at_ns = 0          # ... until subscribers had time to reconnect
        self._holds = Holds(self.dropped)  # the runtime's own sessionless events (holding.py)
        self._anchors: dict[int, RuntimeAnchors] = {}    # tree id -> runtime-noise places
        self._passwd = home_of
        self._homes: dict[int | None, str | None] = {}   # uid -> home, until the next reload

    # ------------------------------------------------------------------ public API

    def handle(self, event: Any, now_ns: int) -> list[Out]:
        """Process one collector event; never raises on bad input (counted, dropped)."""
        try:                       # the whole per-event path inline: one call less per event
            if not _plainly_valid(event):
                problems = validate_event(event)     # decides, and words what is wrong
                if problems:
                    self._invalid(event, problems)
                    return []
            kind = event["kind"]
            if kind == "loss":
                return self.loss(int(event["count"]), str(event.get("where", "kernel")), event["ts_ns"])
            ts = event["ts_ns"]
            skew = now_ns - ts                       # clamped by comparisons, not min/max calls
            if skew > MAX_CLOCK_SKEW_NS:
                skew = MAX_CLOCK_SKEW_NS
            elif skew < -MAX_CLOCK_SKEW_NS:
                skew = -MAX_CLOCK_SKEW_NS
            self._skew_ns = skew
            due = self.sessions.next_due_ns          # nothing can expire yet: skip the call
            out = self._expire(ts) if due is not None and ts > due else []
            if kind == "root":
                return out + self._root_event(event)
            if kind == "fork":
                if self.tracker.on_fork(event["tgid"], event["child_tgid"]) is not None:
                    self.counters["forks_tracked"] += 1
                return out
            if kind == "exit":
                try:
                    out += self._process_event(event, kind, ts)
                finally:
                    self._exit_cleanup(event["tgid"], ts)
                return out
            if out:
                return out + self._process_event(event, kind, ts)
            return self._process_event(event, kind, ts)    # the usual case: its list as is
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            self._malformed(f"unprocessable event: {type(exc).__name__}: {exc}")
            return []

    def tick(self, now_ns: int) -> list[Out]:
        """Timers: close sessions whose grace/idle gap passed; periodic ``flushed`` messages."""
        out: list[Out] = []
        if self._announce and now_ns >= self._announce_at_ns:
            out, self._announce = self._announce, []
        out += self._expire(self._event_clock(now_ns))
        if self._next_flush_ns is None:
            self._next_flush_ns = now_ns + self.flush_interval_ns
        elif now_ns >= self._next_flush_ns:
            self._next_flush_ns = now_ns + self.flush_interval_ns
            out += [(SESSIONIZER_SESSION, lifecycle(s, "flushed", now_ns))
                    for s in self.sessions if s.event_count > 0]
        return out

    def loss(self, count: int, where: str, now_ns: int) -> list[Out]:
        """Events were lost upstream (kernel ring buffer, collector bus, a bus gap, a restart).

        A session that becomes incomplete is announced at once with a ``flushed`` lifecycle
        message, so downstream does not wait for the periodic flush or the close to learn it.
        """
        self.counters[f"lost_{where}"] += count
        reason = "collector_restart" if where == "collector_restart" else "loss"
        return [(SESSIONIZER_SESSION, lifecycle(s, "flushed", now_ns))
                for s in self.sessions.mark_loss(count, reason)]

    def leader_gone(self, tgid: int, now_ns: int) -> list[Out]:
        """The leader's exit was never seen but the process no longer exists (loss, restart)."""
        self.tracker.remove(tgid)
        self.sessions.leader_exit(tgid, self._event_clock(now_ns))
        return []

    def forget_dead(self, alive: Callable[[int], bool]) -> int:
        """Drop tracked processes that no longer exist (their exit was lost); returns how many."""
        dead = [t for t in self.tracker.procs if not alive(t)]
        for tgid in dead:
            self.tracker.remove(tgid)
        self._prune_roots()
        self.counters["forgotten_dead"] += len(dead)
        return len(dead)

    def reconfigure(self, settings: Settings) -> None:
        """Swap in validated settings (reload). Tracker and sessions are kept."""
        self.settings = settings
        self._anchors.clear()                  # the noise lists may have changed
        self._homes.clear()                    # and a reload re-reads passwd

    def _home_of(self, uid: int | None) -> str | None:
        """The real home of ``uid``, looked up once per uid (a passwd lookup costs ~40 us;
        every new root needs one)."""
        try:
            return self._homes[uid]
        except KeyError:
            home = self._homes[uid] = self._passwd(uid)
            return home

    def shutdown(self, now_ns: int) -> list[Out]:
        """A ``shutdown`` lifecycle message for every session still open."""
        return [(SESSIONIZER_SESSION, lifecycle(s, "shutdown", now_ns)) for s in self.sessions]

    def checkpoint_state(self) -> dict[str, Any]:
        """Tracker, open sessions and recently closed ones as JSON-able data (checkpoint.py)."""
        return {"tracker": self.tracker.to_state(),
                "sessions": [s.to_state() for s in self.sessions],
                "closed_sessions": self.trees.to_state()}

    def restore(self, state: dict[str, Any], now_ns: int, alive: Callable[[int], bool],
                clean: bool = False) -> int:
        """Resume from a checkpoint; processes that died meanwhile are forgotten, and sessions
        whose leader died start their grace period now. After an unclean stop (no final
        checkpoint) every restored session is marked incomplete: output still queued at the kill
        is gone. Returns the number of sessions restored.
        """
        tracker = Tracker.from_state(state.get("tracker", {}))           # parse everything first:
        sessions = sorted((Session.from_state(r) for r in state.get("sessions", [])),
                          key=lambda x: x.session_id)                   # a bad checkpoint raises
        trees = TreeBook.from_state(state.get("closed_sessions"))        # before anything changes
        self.tracker, self.trees = tracker, trees
        self._upgrade_restored(sessions)
        self.forget_dead(alive)
        for s in sessions:
            self.sessions.add(s)
        for s in self.sessions:
            if s.origin is Origin.INVOCATION and not alive(s.leader_tgid):
                self.sessions.leader_exit(s.leader_tgid, now_ns)
        if not clean:
            self._announce += [(SESSIONIZER_SESSION, lifecycle(s, "flushed", now_ns))
                               for s in self.sessions.mark_loss(0, "restart")]
            self._announce_at_ns = now_ns + ANNOUNCE_DELAY_NS
            self.counters["restored_unclean"] += 1
        self.counters["sessions_restored"] += len(self.sessions)
        return len(self.sessions)

    def stats(self) -> dict[str, int]:
        """Counters for the heartbeat: accepted, dropped_<reason>, open sessions, loss."""
        out = dict(self.counters)
        out.update({f"dropped_{k}": v for k, v in self.dropped.items()})
        out["open_sessions"] = len(self.sessions)
        out["tracked_processes"] = len(self.tracker)
        return out

    # ------------------------------------------------------------------ per event

    def _process_event(self, event: dict[str, Any], kind: str, ts: int) -> list[Out]:
        out: list[Out] = []
        tgid, ppid = event["tgid"], event["ppid"]
        procs = self.tracker.procs                   # the tracker's membership, read directly:
        if tgid not in procs and ppid not in procs:  # this runs for every event
            self._adopt(event, tgid, ppid)
        if kind == "exec":
            opened, reason = self._exec_lifecycle(event, ts)
            out += opened
            if reason:
                return self._drop(out, reason)
        proc = procs.get(tgid) or procs.get(ppid)   # the process, else its parent (same image)
        root = self.tracker.roots.get(proc.root) if proc is not None else None
        if root is None:
            return self._drop(out, "untracked")
        if kind == "open":                           # _open_gate, its common case inlined
            raw = event.get("abspath") or event.get("path")
            facts = self.settings.path_facts            # a remembered path: no call (noise.py)
            fact = facts.memo.get(raw, NOT_KNOWN) if type(raw) is str else NOT_KNOWN
            if fact is NOT_KNOWN:
                fact = facts.fact(raw)
            extra = None if fact is None and proc.role is None else \
                self._open_verdict(event, raw, fact, proc, root)
        elif kind == "exit" or kind == "exec":      # nothing to filter: no call
            extra = None
        else:
            extra = self._gate(event, kind, proc, root)
        if extra is not None and type(extra) is str:
            return self._drop(out, extra)
        if proc.role is not None:
            extra = {"role": proc.role} if extra is None else {**extra, "role": proc.role}
        opened = None                                # _session_for's first answer, inlined:
        if root.profile in self.settings.runtime_profiles or \
                (session := self.sessions.for_root(root.tree_id)) is None:   # a tree's own session
            session, opened = self._session_for(root, ts, tgid, proc, event["uid"], extra, kind)
            if session is None:
                self._hold(root, Held(ts, event, kind, tgid, ppid, extra, write_key(event, kind)))
                return out
            if opened:
                out += opened
        holds = self._holds
        if holds.visible or holds.hidden:
            out += self._release(root, session, ts, visible=bool(opened))
        out.append(self._accept(session, root, event, kind, tgid, ppid, ts, proc.depth, extra))
        return out

    def _accept(self, session: Session, root: Root, event: dict[str, Any], kind: str, tgid: int,
                ppid: int, ts: int, depth: int | None, extra: dict[str, Any] | None) -> Out:
        """Count the event in its session and enrich it (session_id, profile, depth, tree_id,
        shard, and ``extra``: role, hidden, targets; lineage for execs). ``depth``: already
        known for an event accepted at once; a held event takes the tracker's depth at its
        release. A hidden event never keeps a session open (it does not move ``updated_ns``).
        One call per accepted event: record and enrich are inlined here (the hot path)."""
        sid = session.session_id
        session.event_count += 1                 # SessionTable.record
        if extra is None:
            if ts > session.updated_ns:
                session.updated_ns = ts
        elif ts > session.updated_ns and "hidden" not in extra:
            session.updated_ns = ts
        if root.last_session != sid:
            root.last_session = sid
        self.counters["accepted"] += 1
        if depth is None:
            depth = self.tracker.depth_of(tgid, ppid) or 0
        out = {**event, "session_id": sid, "profile": session.profile, "depth": depth,
               "tree_id": root.tree_id, "shard": session.shard}
        if extra is not None:
            out.update(extra)
        if kind == "exec":
            nodes = build_lineage(self.tracker, tgid, self.settings.lineage_max_depth)
            out["lineage"] = [{**n, "comm": to_wire(n["comm"])} for n in nodes]
        return (SESSIONIZER_EVENT, out)

    def _hold(self, root: Root, item: Held) -> None:
        """Keep an event of the runtime's own image (no session open) for a turn that may start
        soon, or a hidden write for the horizon (holding.py)."""
        if item.extra is not None and "hidden" in item.extra:
            self._holds.hold_hidden(root.tree_id, item, self.settings.horizon_ns)
        else:
            self._holds.hold(root.tree_id, item, self._lookback_ns(root), self.settings.horizon_ns)

    def _lookback_ns(self, root: Root) -> int:
        profile = self.settings.profile(root.profile)
        return int((profile.idle_gap_s if profile is not None else 5.0) * NS_PER_S)

    def _release(self, root: Root, session: Session, ts: int, visible: bool) -> list[Out]:
        """Held events join a session of their tree: the hidden writes always, the lookback
        only when the tree's own turn just opened this session."""
        if root.tree_id not in self._holds.visible and root.tree_id not in self._holds.hidden:
            return []
        held = self._holds.take(root.tree_id, ts, self._lookback_ns(root), self.settings.horizon_ns,
                                visible and session.tree_id == root.tree_id)
        if not held:
            return []
        shown = [h.ts for h in held if h.extra is None or "hidden" not in h.extra]
        if shown:
            session.created_ns = min(session.created_ns, shown[0])
        self.counters["released"] += len(held)
        return [self._accept(session, root, h.event, h.kind, h.tgid, h.ppid, h.ts, None, h.extra)
                for h in held]

    def _adopt(self, event: dict[str, Any], tgid: int, ppid: int) -> None:
        """The collector says this process descends from a root we know, but we never saw how
        (its fork/exec happened while we were down, or was lost): track it under that root."""
        root = event.get("root")
        if isinstance(root, int) and root in self.tracker.roots and self.tracker.exists(root):
            comm = event.get("comm")
            name = from_wire(comm) if isinstance(comm, (str, bytes)) else ""
            self.tracker.adopt(tgid, ppid, root, name.rsplit("/", 1)[-1])
            self.counters["adopted"] += 1

    def _drop(self, out: list[Out], reason: str) -> list[Out]:
        self.dropped[reason] += 1
        return out

    # ------------------------------------------------------------------ sessions

    def _session_for(self, root: Root, ts: int, tgid: int, proc: Proc, uid: int,
                     extra: dict[str, Any] | None, kind: str) -> tuple[Session | None, list[Out]]:
        """Which session an accepted event of ``root``'s tree joins (docs §Session model).
        An activity session's leader is the process whose event opened it (docs/bus.md §7.1).
        None: the event cannot open one and none is open (held, see _hold): a hidden write, or
        an event of a runtime's own image (role agent) whose kind is not in OPENING_KINDS (an
        exec is always published, so it may open one). ``uid``: the event's; a runtime tree
        joins the CLI window of its root's user (a tool that changed uid, like sudo's child,
        still belongs to the gateway that ran it)."""
        runtime = root.profile in self.settings.runtime_profiles
        if runtime:                                          # parity: the CLI time window,
            window = self.sessions.latest_invocation(root.uid if root.uid is not None else uid)
            if window is not None:                           # of the runtime's own user
                return window, []
        current = self.sessions.for_root(root.tree_id)
        if current is not None:
            return current, []
        if extra is not None and "hidden" in extra:
            return None, []
        if runtime and proc.role == AGENT and kind not in OPENING_KINDS:
            return None, []
        return self._open_activity(root, ts, tgid, uid)

    def _open_activity(self, root: Root, ts: int, tgid: int, uid: int) -> tuple[Session, list[Out]]:
        profile = self.settings.profile(root.profile)
        idle = profile.idle_gap_s if profile is not None else 5.0
        grace = profile.close_grace_s if profile is not None else 2.0
        parent = self.trees.parent_for(root, ts, self.settings.horizon_ns, self.sessions.sessions)
        s = self.sessions.open(profile=root.profile, origin=Origin.ACTIVITY, tree_root=root.tgid,
                               leader_tgid=tgid, ts_ns=ts, idle_gap_s=idle, close_grace_s=grace,
                               leader_uid=uid, tree_id=root.tree_id, shard=root.shard,
                               parent_session_id=parent, root_uid=root.uid, root_cap_eff=root.cap_eff)
        self._mark_bootstrap(s, root)
        return s, [self._opened(s, ts)]

    def _mark_bootstrap(self, s: Session, root: Root) -> None:
        """A session of a tree found by the collector's /proc scan, opened within the history
        horizon of that scan: what the tree did before CASA started was never seen."""
        if root.bootstrap_ns is not None and s.created_ns - root.bootstrap_ns <= self.settings.horizon_ns:
            s.complete = False
            s.incomplete_reason = s.incomplete_reason or "bootstrap"

    def _opened(self, s: Session, ts: int) -> Out:
        self.counters["sessions_opened"] += 1
        self.structure_changed = True
        log.info("session opened | session_id=%d profile=%s origin=%s leader_tgid=%d tree_id=%d "
                 "shard=%d parent_session_id=%s", s.session_id, s.profile, s.origin.value,
                 s.leader_tgid, s.tree_id, s.shard, s.parent_session_id)
        return (SESSIONIZER_SESSION, lifecycle(s, "opened", ts))

    def _exit_cleanup(self, tgid: int, ts: int) -> None:
        self.tracker.remove(tgid)
        self.sessions.leader_exit(tgid, ts)

    def _expire(self, now_ns: int) -> list[Out]:
        out = []
        horizon = self.settings.horizon_ns
        for s in self.sessions.expire(now_ns):
            self.counters["sessions_closed"] += 1
            self.trees.note_closed(s.session_id, s.closed_ns, now_ns, horizon)
            log.info("session closed | session_id=%d profile=%s events=%d complete=%s",
                     s.session_id, s.profile, s.event_count, s.complete)
            out.append((SESSIONIZER_SESSION, lifecycle(s, "closed", now_ns)))
        if out:
            self._prune_roots()
        return out

    def _prune_roots(self) -> None:
        """Forget root records no process refers to, and what was kept for them."""
        if self.tracker.prune_roots():
            live = {r.tree_id for r in self.tracker.roots.values()}
            for tree_id in [t for t in self._anchors if t not in live]:
                del self._anchors[tree_id]
            for tree_id in [t for t in (*self._holds.visible, *self._holds.hidden) if t not in live]:
                self._holds.forget(tree_id)

    def _upgrade_restored(self, sessions: list[Session]) -> None:
        """Records from a checkpoint written before trees: roots get a tree id (and their own
        shard); sessions keep routing by their id (``shard = session_id``, what the analyzer
        did for them before) and name their root's tree."""
        for root in self.tracker.roots.values():
            if root.tree_id == 0:
                root.tree_id = root.shard = self.tree_ids.allocate()
                root.home = self._home_of(root.uid)
        for s in sessions:
            if s.tree_id == 0:
                root = self.tracker.roots.get(s.tree_root)
                s.tree_id = root.tree_id if root is not None else 0
                s.shard = s.session_id

    def _event_clock(self, now_ns: int) -> int:
        """Our clock expressed in event time (events carry kernel-derived wall time)."""
        return now_ns - self._skew_ns

    def _invalid(self, event: Any, problems: list[str]) -> None:
        kind = event.get("kind") if isinstance(event, dict) else None
        if isinstance(kind, str) and kind and not known_kind(kind):
            self.dropped["unknown_kind"] += 1       # a newer collector's kind: not malformed
            return
        self._malformed("; ".join(problems))

    def _malformed(self, why: str) -> None:
        self.counters["malformed_events"] += 1
        if self.counters["malformed_events"] <= LOG_FIRST_MALFORMED:
            log.warning("dropped a malformed collector event | reason=%s", why)
