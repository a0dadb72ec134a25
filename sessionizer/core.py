"""The pure sessionizer core: raw collector events in, session-tagged events and lifecycle out.

    core = Sessionizer(settings, endpoints)
    for topic, msg in core.handle(event, now_ns): publish(topic, msg)
    for topic, msg in core.tick(now_ns): publish(topic, msg)        # every poll-loop pass

No sockets, no clocks: ``now_ns`` is passed in (wall clock at receipt for ``handle``, wall clock
for ``tick``). Order of work per event (casa-original.md §6, adapted to several sessions):

1. validate (malformed events are counted and dropped);
2. lifecycle first: ``root`` events and profile-matching execs register roots (an invocation root
   opens its session); execs propagate the tracker (routine execs and runtime shell wrappers are
   transparent); forks add the child;
3. tree gate (the process or its parent is tracked);
4. drop the runtime shell wrapper's own exec/exit and routine execs' exits;
5. the ingest noise filters (gates.py), then the configured-connect ignore at depth 0;
6. session attribution (may open an activity session), enrichment (session_id, profile, depth,
   lineage for execs);
7. on exit: tracker removal and, for an invocation leader, the start of the 2 s grace.

Outputs are ``(topic, map)`` pairs in the order they must be published. Event maps keep their
wire form (non-UTF-8 text stays msgpack ``bin``); only added fields are new.
"""

from __future__ import annotations

import itertools
import logging
import operator
import os
from collections import Counter, deque
from collections.abc import Callable
from typing import Any, Protocol

from bus.events import COMMON_FIELDS, KIND_FIELDS, LOSS, validate_event
from bus.text import from_wire, to_wire
from bus.topics import SESSIONIZER_EVENT, SESSIONIZER_SESSION
from sessionizer.gates import ENOENT, ingest_drop_reason, routine_exec
from sessionizer.lineage import build_lineage
from sessionizer.sessions import NS_PER_S, Origin, Session, SessionIds, SessionTable, lifecycle
from sessionizer.settings import Settings
from sessionizer.tracker import Proc, Root, Tracker

__all__ = ["Sessionizer", "Out", "EndpointMatcher", "FLUSH_INTERVAL_S", "is_wrapper_argv"]

FLUSH_INTERVAL_S = 30.0
MAX_CLOCK_SKEW_NS = 10 * NS_PER_S    # never believe event clocks further than this from ours
LOG_FIRST_MALFORMED = 5
HOLD_MAX_EVENTS = 64                 # a runtime root's own events kept for a turn that may start
ANNOUNCE_DELAY_NS = NS_PER_S          # after a restart, downstream reconnects within ~0.1 s

Out = tuple[str, dict[str, Any]]

log = logging.getLogger("casa.sessionizer")


def _type_signatures(fields: dict[str, tuple[type, ...]]) -> frozenset[tuple[type, ...]]:
    """Every tuple of exact field types a valid event of this kind can have (a few dozen)."""
    return frozenset(itertools.product(*fields.values()))


# kind -> (fields getter, accepted type signatures), from the bus tables (bus/events.py)
_SIGNATURES: dict[str, tuple[Callable[[dict[str, Any]], tuple[Any, ...]],
                             frozenset[tuple[type, ...]]]] = {
    kind: (operator.itemgetter(*{**COMMON_FIELDS, **fields}),
           _type_signatures({**COMMON_FIELDS, **fields}))
    for kind, fields in KIND_FIELDS.items() if kind != LOSS}
_TEXT_TYPES = frozenset((str, bytes))


def _plainly_valid(event: Any) -> bool:
    """True if ``bus.validate_event`` would find nothing, judged by exact types only (no
    subclasses, so no bool posing as an int). False means "ask validate_event", which then
    decides and words the problems: this only spares it the events that are plainly fine."""
    if type(event) is not dict:
        return False
    kind = event.get("kind")
    entry = _SIGNATURES.get(kind) if type(kind) is str else None
    if entry is None:
        return False
    getter, signatures = entry
    try:
        if tuple(map(type, getter(event))) not in signatures:
            return False
    except KeyError:                                  # a required field is missing
        return False
    if kind == "exec" or kind == "root":
        for a in event["argv"]:
            if type(a) not in _TEXT_TYPES:
                return False
    return True


class EndpointMatcher(Protocol):
    def matches(self, addr: str, port: int) -> bool: ...


class _NoEndpoints:
    def matches(self, addr: str, port: int) -> bool:
        return False


def is_wrapper_argv(argv: list[str]) -> bool:
    """A shell started to run a command string (``-c``, also ``-lc``/``-ec``) or with no arguments."""
    args = argv[1:]
    if not args:
        return True
    return any(a.startswith("-") and not a.startswith("--") and "c" in a[1:] for a in args)


def _text(event: dict[str, Any], key: str) -> str:
    value = event.get(key, "")
    return from_wire(value) if isinstance(value, (str, bytes)) else ""


def _argv(event: dict[str, Any]) -> list[str]:
    return [from_wire(a) for a in event.get("argv") or [] if isinstance(a, (str, bytes))]


class Sessionizer:
    """Tracker + session table + gates. See the module docstring for the order of work."""

    def __init__(self, settings: Settings, endpoints: EndpointMatcher | None = None,
                 ids: SessionIds | None = None, flush_interval_s: float = FLUSH_INTERVAL_S) -> None:
        self.settings = settings
        self.endpoints = endpoints or _NoEndpoints()
        self.tracker = Tracker()
        self.sessions = SessionTable(ids)
        self.flush_interval_ns = int(flush_interval_s * NS_PER_S)
        self.dropped: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()
        self._skew_ns = 0                 # our clock minus event clock, from the last event
        self._next_flush_ns: int | None = None
        self.structure_changed = False    # a root or session appeared: worth a checkpoint now
        self._announce: list[Out] = []    # lifecycle messages held back after a restore ...
        self._announce_at_ns = 0          # ... until subscribers had time to reconnect
        self._held: dict[int, deque] = {}  # runtime root -> its own recent sessionless events

    # ------------------------------------------------------------------ public API

    def handle(self, event: Any, now_ns: int) -> list[Out]:
        """Process one collector event; never raises on bad input (counted, dropped)."""
        try:                       # the whole per-event path inline: one call less per event
            if not _plainly_valid(event):
                problems = validate_event(event)     # decides, and words what is wrong
                if problems:
                    self._malformed("; ".join(problems))
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
            try:
                out += self._process_event(event, kind, ts)
            finally:
                if kind == "exit":
                    self._exit_cleanup(event["tgid"], ts)
            return out
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
        return [(SESSIONIZER_SESSION, lifecycle(s, "flushed", now_ns))
                for s in self.sessions.mark_loss(count)]

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
        self.tracker.prune_roots()
        self.counters["forgotten_dead"] += len(dead)
        return len(dead)

    def reconfigure(self, settings: Settings) -> None:
        """Swap in validated settings (reload). Tracker and sessions are kept."""
        self.settings = settings

    def shutdown(self, now_ns: int) -> list[Out]:
        """A ``shutdown`` lifecycle message for every session still open."""
        return [(SESSIONIZER_SESSION, lifecycle(s, "shutdown", now_ns)) for s in self.sessions]

    def checkpoint_state(self) -> dict[str, Any]:
        """Tracker and open sessions as JSON-able data (checkpoint.py stores it)."""
        return {"tracker": self.tracker.to_state(),
                "sessions": [s.to_state() for s in self.sessions]}

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
        self.tracker = tracker                                          # before anything changes
        self.forget_dead(alive)
        for s in sessions:
            self.sessions.add(s)
        for s in self.sessions:
            if s.origin is Origin.INVOCATION and not alive(s.leader_tgid):
                self.sessions.leader_exit(s.leader_tgid, now_ns)
        if not clean:
            self._announce += [(SESSIONIZER_SESSION, lifecycle(s, "flushed", now_ns))
                               for s in self.sessions.mark_loss(0)]
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
        if proc is None:
            return self._drop(out, "untracked")
        reason = self._drop_reason(event, kind, proc)
        if reason:
            return self._drop(out, reason)
        root = self.tracker.roots.get(proc.root)
        if root is None:
            return self._drop(out, "untracked")
        session, opened = self._session_for(root, ts, tgid, proc, event["uid"])
        if session is None:
            self._hold(root, event, kind, tgid, ppid, ts)
            return out
        if opened:
            out += opened
            out += self._release(root, session, ts)
        out.append(self._accept(session, event, kind, tgid, ppid, ts, proc.depth))
        return out

    def _accept(self, session: Session, event: dict[str, Any], kind: str, tgid: int, ppid: int,
                ts: int, depth: int | None = None) -> Out:
        """Count the event in its session and enrich it (session_id, profile, depth; lineage
        for execs). ``depth``: already known for an event accepted at once; a held event takes
        the tracker's depth at its release. One call per accepted event: record and enrich
        are inlined here (the hot path)."""
        session.event_count += 1                 # SessionTable.record
        if ts > session.updated_ns:
            session.updated_ns = ts
        self.counters["accepted"] += 1
        if depth is None:
            depth = self.tracker.depth_of(tgid, ppid) or 0
        out = {**event, "session_id": session.session_id, "profile": session.profile,
               "depth": depth}
        if kind == "exec":
            nodes = build_lineage(self.tracker, tgid, self.settings.lineage_max_depth)
            out["lineage"] = [{**n, "comm": to_wire(n["comm"])} for n in nodes]
        return (SESSIONIZER_EVENT, out)

    def _hold(self, root: Root, event: dict[str, Any], kind: str, tgid: int, ppid: int,
              ts: int) -> None:
        """Keep a runtime root's own event (depth 0, no session open) for a short lookback: if
        a tool process starts a turn soon, it belongs to it (an in-process write or read that
        precedes the exec); otherwise it ages out as background (counted)."""
        held = self._held.setdefault(root.tgid, deque())
        held.append((ts, event, kind, tgid, ppid))
        self._age_held(root, held, ts)
        if len(held) > HOLD_MAX_EVENTS:
            held.popleft()
            self.dropped["runtime_background"] += 1

    def _age_held(self, root: Root, held: deque, now: int) -> None:
        profile = self.settings.profile(root.profile)
        lookback = int((profile.idle_gap_s if profile is not None else 5.0) * NS_PER_S)
        while held and held[0][0] < now - lookback:
            held.popleft()
            self.dropped["runtime_background"] += 1

    def _release(self, root: Root, session: Session, ts: int) -> list[Out]:
        """A turn started: the runtime's own events of the lookback join its new session first."""
        held = self._held.pop(root.tgid, None)
        if not held:
            return []
        self._age_held(root, held, ts)
        if held:
            session.created_ns = min(session.created_ns, held[0][0])
            self.counters["released"] += len(held)
        return [self._accept(session, ev, kind, tgid, ppid, t) for t, ev, kind, tgid, ppid in held]

    def _adopt(self, event: dict[str, Any], tgid: int, ppid: int) -> None:
        """The collector says this process descends from a root we know, but we never saw how
        (its fork/exec happened while we were down, or was lost): track it under that root."""
        root = event.get("root")
        if isinstance(root, int) and root in self.tracker.roots and self.tracker.exists(root):
            name = os.path.basename(_text(event, "comm"))
            self.tracker.adopt(tgid, ppid, root, name)
            self.counters["adopted"] += 1

    def _drop(self, out: list[Out], reason: str) -> list[Out]:
        self.dropped[reason] += 1
        return out

    def _drop_reason(self, event: dict[str, Any], kind: str, proc: Proc) -> str | None:
        """``proc``: the tracked process of the event, or its tracked parent."""
        if kind == "exit":
            if proc.tgid != event["tgid"]:            # only the process's own entry counts
                return None
            if proc.wrapper:
                return "shell_wrapper"
            if proc.routine:
                return "routine_exec"
            return None
        settings = self.settings
        if kind == "open":                   # ingest_drop_reason's OPEN branch, one call less
            reason = settings.open_paths.reason(event.get("path"))
        else:
            reason = ingest_drop_reason(event, settings.noise, settings.connect)
        if reason:
            return reason
        if kind == "connect" and proc.depth == 0 and not proc.foreign:
            port = int(event.get("port", 0))
            if self.endpoints.matches(str(event.get("addr", "")), port):
                return "configured_connect"
            if port in self.settings.noise.runtime_dns_ports and self._runtime_tree(proc):
                return "runtime_dns"                  # the runtime's own name lookups (docs)
        return None

    def _runtime_tree(self, proc: Proc) -> bool:
        root = self.tracker.roots.get(proc.root)
        profile = self.settings.profile(root.profile) if root is not None else None
        return profile is not None and profile.kind == "runtime"

    # ------------------------------------------------------------------ lifecycle

    def _exec_lifecycle(self, event: dict[str, Any], ts: int) -> tuple[list[Out], str | None]:
        """Tracker and root updates for an exec; returns (lifecycle outputs, drop reason)."""
        if event.get("ret", 0) != 0:
            return [], ("exec_not_found" if event.get("ret") == -ENOENT else None)
        tgid, ppid = event["tgid"], event["ppid"]
        path, argv = _text(event, "path"), _argv(event)
        exe = _text(event, "exe") or path
        # an fd exec (fexecve: no path) is named after the file behind the fd, not after the
        # event's comm, which is the pre-exec one (the runtime's own name)
        name = os.path.basename(path.rstrip("/")) or os.path.basename(exe) or _text(event, "comm")
        current = self.tracker.get(tgid)
        if current is not None and current.is_root:
            return [], self._root_reexec(current, name, exe, argv)
        for profile in self.settings.profiles:
            if profile.matches(name[:15], exe, argv):
                opened = self._register_root(tgid, ppid, name, profile.name, ts, event["uid"])
                if opened is not None:
                    return opened, "root_exec"
                break
        shells = self.settings.shell_names
        wrapper = (self.settings.shell_wrappers and name in shells and is_wrapper_argv(argv)
                   and self.tracker.member(tgid, ppid) and not self.tracker.shell_above(ppid, shells))
        routine = routine_exec(event, self.settings.noise)
        self.tracker.on_exec(tgid, ppid, name, transparent=wrapper or routine,
                             wrapper=wrapper, routine=routine)
        return [], ("shell_wrapper" if wrapper else None)

    def _root_reexec(self, proc: Proc, name: str, exe: str, argv: list[str]) -> str | None:
        """A root execs a new image in place. Still its profile's image (``#!/usr/bin/env node``:
        the script, then ``node <script>``): the same agent, nothing to publish. Anything else (a
        payload in /tmp, a memfd, ``bash -c`` running its last command in place) is published
        like any exec of the session, and from now on the process is no longer treated as the
        runtime itself (see ``Proc.foreign``). The process stays its tree's root either way."""
        proc.comm = name
        root = self.tracker.roots.get(proc.root)
        profile = self.settings.profile(root.profile) if root is not None else None
        if profile is not None and profile.matches(name[:15], exe, argv):
            return "root_exec"                                     # env -> node
        proc.foreign = True
        self.counters["root_reimaged"] += 1
        log.info("agent root exec'd an image its profile does not match; published "
                 "| tgid=%d profile=%s comm=%r", proc.tgid, root.profile if root else "?", name)
        return None

    def _root_event(self, event: dict[str, Any]) -> list[Out]:
        """The collector names a root (bootstrap scan, or an exec it matched)."""
        profile = self.settings.profile(str(event.get("profile", "")))
        if profile is None:
            self.dropped["unknown_profile"] += 1
            log.warning("root event names a profile that is not configured; ignored "
                        "| profile=%r tgid=%s", event.get("profile"), event.get("tgid"))
            return []
        current = self.tracker.get(event["tgid"])
        if current is not None and current.is_root:
            return []                                # already known (we matched its exec)
        name = os.path.basename(_text(event, "exe")) or _text(event, "comm")
        return self._register_root(event["tgid"], event["ppid"], name, profile.name,
                                   event["ts_ns"], event["uid"]) or []

    def _register_root(self, tgid: int, ppid: int, name: str, profile_name: str,
                       ts: int, uid: int) -> list[Out] | None:
        """Track a new root; an invocation root opens its session. None: not a new root."""
        profile = self.settings.profile(profile_name)
        assert profile is not None
        if profile.kind == "invocation" and self._inside_invocation(tgid, ppid, profile_name):
            return None                              # the CLI re-exec'd as its own child
        self.tracker.add_root(tgid, ppid, name, profile_name, ts, uid)
        self.counters["roots"] += 1
        self.structure_changed = True
        log.info("agent root | tgid=%d profile=%s kind=%s comm=%r", tgid, profile_name, profile.kind, name)
        if profile.kind != "invocation":
            return []
        s = self.sessions.open(profile=profile_name, origin=Origin.INVOCATION, tree_root=tgid,
                               leader_tgid=tgid, ts_ns=ts, idle_gap_s=profile.idle_gap_s,
                               close_grace_s=profile.close_grace_s, leader_uid=uid)
        return [self._opened(s, ts)]

    def _inside_invocation(self, tgid: int, ppid: int, profile_name: str) -> bool:
        root = self.tracker.root_of(tgid, ppid)
        if root is None or root.profile != profile_name:
            return False
        s = self.sessions.for_root(root.tgid)
        return s is not None and s.origin is Origin.INVOCATION

    def _session_for(self, root: Root, ts: int, tgid: int, proc: Proc,
                     uid: int) -> tuple[Session | None, list[Out]]:
        """Which session an accepted event of ``root``'s tree joins (docs §Session model).
        An activity session's leader is the process whose event opened it (docs/bus.md §7.1).
        None: a runtime root's own background event with no session open (held, see _hold);
        a root that exec'd a foreign image is not the runtime any more: its events open one.
        ``uid``: the event's; a runtime tree joins the CLI window of its root's user (a tool
        that changed uid, like sudo's child, still belongs to the gateway that ran it)."""
        profile = self.settings.profile(root.profile)
        kind = profile.kind if profile is not None else "runtime"
        if kind == "runtime":                                # parity: the CLI time window,
            window = self.sessions.latest_invocation(root.uid if root.uid is not None else uid)
            if window is not None:                           # of the runtime's own user
                return window, []
        current = self.sessions.for_root(root.tgid)
        if current is not None:
            return current, []
        if kind == "runtime" and proc.depth == 0 and not proc.foreign:
            return None, []
        idle = profile.idle_gap_s if profile is not None else 5.0
        grace = profile.close_grace_s if profile is not None else 2.0
        s = self.sessions.open(profile=root.profile, origin=Origin.ACTIVITY, tree_root=root.tgid,
                               leader_tgid=tgid, ts_ns=ts, idle_gap_s=idle, close_grace_s=grace,
                               leader_uid=uid)
        return s, [self._opened(s, ts)]

    def _opened(self, s: Session, ts: int) -> Out:
        self.counters["sessions_opened"] += 1
        self.structure_changed = True
        log.info("session opened | session_id=%d profile=%s origin=%s leader_tgid=%d",
                 s.session_id, s.profile, s.origin.value, s.leader_tgid)
        return (SESSIONIZER_SESSION, lifecycle(s, "opened", ts))

    def _exit_cleanup(self, tgid: int, ts: int) -> None:
        self.tracker.remove(tgid)
        self.sessions.leader_exit(tgid, ts)

    def _expire(self, now_ns: int) -> list[Out]:
        out = []
        for s in self.sessions.expire(now_ns):
            self.counters["sessions_closed"] += 1
            log.info("session closed | session_id=%d profile=%s events=%d complete=%s",
                     s.session_id, s.profile, s.event_count, s.complete)
            out.append((SESSIONIZER_SESSION, lifecycle(s, "closed", now_ns)))
        if out:
            self.tracker.prune_roots()
        return out

    def _event_clock(self, now_ns: int) -> int:
        """Our clock expressed in event time (events carry kernel-derived wall time)."""
        return now_ns - self._skew_ns

    def _malformed(self, why: str) -> None:
        self.counters["malformed_events"] += 1
        if self.counters["malformed_events"] <= LOG_FIRST_MALFORMED:
            log.warning("dropped a malformed collector event | reason=%s", why)
