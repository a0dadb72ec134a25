"""History an attacker cannot push out: time-bounded indices per agent tree.

The original derives ``history.*`` from a session's last 64 events, so 80 unrelated opens
between a write and its exec (or a session boundary: an idle gap, a detached process) hide the
pair. Here every tree (the sessionizer's ``tree_id``; the session itself when an event has none)
keeps what later events are matched against, by **time**, not by count:

* written files: normalised path -> the write, and (dev, ino) -> the write. Write-intent opens,
  including those a noise filter ``hidden`` from the logs, and rename targets; matched by an
  exec's path, its ``exe`` (fd execs; ``" (deleted)"`` stripped) or its (dev, ino);
* the latest connect, exec, sensitive open and credential read (each pair flag only needs the
  partner closest in time, as the original's window did);
* burst counters per kind: the last ``threshold - 1`` kept events of the kind, so other kinds
  never dilute a burst;
* per process: its image (exec'd binary, is it a shell), and an interpreter's pending script
  argument (``sh x.sh``: matched when it opens the script, so relative names resolve).

Windows: write->exec and connect->exec within ``history_horizon_seconds``; sensitive/credential
pairs within ``sensitive_history_window_seconds`` either order; bursts within
``burst_window_seconds``. Each growing index holds at most ``history_index_cap`` entries; the
oldest are evicted first, entries older than the horizon are pruned as new ones arrive, and an
eviction is never silent: ``history.overflow`` becomes true in the session whose event evicted
and in every later session of that tree (the tree's history is no longer complete).

Flags land in the session of the event that completes the pattern (sticky; the partner may be
in an earlier session of the tree). :class:`TreeStore` drops a tree with no open session and no
event for longer than the horizon, so memory is bounded by the caps times the live trees.
"""

from __future__ import annotations

import sys
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from analyzer.evidence import Evidence, Ref, addr_text
from analyzer.history_flags import HISTORY_BIT, NS_PER_S
from analyzer.path_classes import (CREDENTIAL, DELETED, LOG, PERSISTENCE, SECURITY_TOOL,
                                   PathClasses, tokens)
from analyzer.paths import O_ACCMODE, O_TRUNC, O_WRONLY
from analyzer.scripts import script_argument
from analyzer.session_state import (CHMOD, CONNECT, EXEC, EXIT, OPEN, RENAME, SEND, TRUNCATE,
                                    UNLINK, ProcessState, RecentEvent, basename, event_path,
                                    int_field, text)
from bus.paths import normalise
from policy import Analysis

__all__ = ["TreeHistory", "TreeStore", "SessionMarks", "TreeConfig"]

_BIT = HISTORY_BIT
_NAME = {bit: "history." + name for name, bit in HISTORY_BIT.items()}
CTE, STN, STE = _BIT["connect_then_exec"], _BIT["sensitive_then_network"], _BIT["sensitive_then_execve"]
B_OPEN, B_CONNECT, B_EXEC = _BIT["burst_open"], _BIT["burst_connect"], _BIT["burst_exec"]
WTE, ODP, OVF = _BIT["write_then_exec_same_path"], _BIT["opened_deleted_path"], _BIT["overflow"]
CA, CTN, PW = _BIT["credential_access"], _BIT["credential_then_network"], _BIT["persistence_write"]
LT, STD = _BIT["log_tampering"], _BIT["security_tool_discovery"]
SN, WTI = _BIT["shell_network"], _BIT["written_then_interpreted"]
_OPEN_CLASSES = DELETED | SECURITY_TOOL | CREDENTIAL


class SessionMarks:
    """One session's sticky history bits and their evidence."""

    __slots__ = ("bits", "evidence")

    def __init__(self, bits: int = 0, evidence: Evidence | None = None) -> None:
        self.bits = bits
        self.evidence = evidence if evidence is not None else Evidence()

    def hit(self, bit: int, refs: tuple[Ref | None, ...]) -> None:
        if not self.bits & bit:
            self.bits |= bit
            self.evidence.add(_NAME[bit], refs)


@dataclass(frozen=True, slots=True)
class TreeConfig:
    """The analysis values the indices use, in the units they compare."""

    horizon_ns: int
    sensitive_ns: int
    burst_ns: int
    cap: int
    thresholds: tuple[int, int, int]          # open, connect, exec
    shells: frozenset[str]
    interpreters: frozenset[str]
    security_tools: frozenset[str]

    @classmethod
    def of(cls, a: Analysis) -> "TreeConfig":
        return cls(a.history_horizon_seconds * NS_PER_S, a.sensitive_history_window_seconds * NS_PER_S,
                   a.burst_window_seconds * NS_PER_S, max(1, a.history_index_cap),
                   (a.burst_open_threshold, a.burst_connect_threshold, a.burst_exec_threshold),
                   frozenset(a.shell_names), frozenset(a.interpreter_names),
                   frozenset(a.security_tool_names))


# Index values are packed ints (ts_ns, tgid, kind) to keep an index at its cap small
# (docs/performance.md): a tuple of three ints costs ~130 bytes more per entry than one int.
_KINDS = (OPEN, RENAME, EXEC)
_CODE = {OPEN: 0, RENAME: 1, EXEC: 2}
_TGID_MASK = (1 << 23) - 1            # pid_max is at most 2**22


def _pack(ts: int, tgid: int, kind: str) -> int:
    return (ts << 25) | ((tgid & _TGID_MASK) << 2) | _CODE[kind]


def _unpack(v: int, path: str) -> Ref:
    return (v >> 25, (v >> 2) & _TGID_MASK, _KINDS[v & 3], path)


def _packed_ts(v: Any) -> int:
    return (v if type(v) is int else v[0]) >> 25


class _Index:
    """Key -> value, oldest first; bounded by count (cap) and by time (entries older than the
    horizon go as new ones arrive). Values are packed ints or tuples that start with one."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: OrderedDict[Any, Any] = OrderedDict()

    def put(self, key: Any, value: Any, ts: int, c: TreeConfig) -> bool:
        """Remember ``key``; True when the cap evicted an entry (younger than the horizon)."""
        items = self.items
        if key in items:
            items.move_to_end(key)
            items[key] = value
            return False
        oldest = ts - c.horizon_ns
        while items and _packed_ts(next(iter(items.values()))) < oldest:
            items.popitem(last=False)
        evicted = len(items) >= c.cap
        if evicted:
            items.popitem(last=False)
        items[key] = value
        return evicted

    def get(self, key: Any, ts: int, horizon_ns: int) -> Any:
        value = self.items.get(key)
        if value is None or abs(ts - _packed_ts(value)) > horizon_ns:
            return None
        return value


class _Burst:
    """The last ``threshold - 1`` kept events of one kind (arrival order)."""

    __slots__ = ("threshold", "window_ns", "last")

    def __init__(self, threshold: int, window_ns: int) -> None:
        self.threshold, self.window_ns = threshold, window_ns
        self.last: deque[Ref] = deque(maxlen=max(threshold - 1, 1))

    def push(self, ref: Ref) -> tuple[Ref, ...] | None:
        """Fold one kept event; the burst's first and last events when it completes one."""
        last = self.last
        if len(last) == last.maxlen:
            first = last[0]
            last.append(ref)
            if self.threshold <= 1:
                return (ref,)
            return (first, ref) if ref[0] - first[0] <= self.window_ns else None
        last.append(ref)
        return (ref,) if self.threshold <= 1 else None


def _within(a: Ref | None, ts: int, window_ns: int) -> bool:
    return a is not None and (window_ns <= 0 or abs(ts - a[0]) <= window_ns)


class TreeHistory:
    """The indices of one agent tree (see the module docstring)."""

    __slots__ = ("c", "classes", "written", "written_ids", "procs", "scripts", "last_connect",
                 "last_exec", "last_sensitive", "last_credential", "bursts", "overflowed",
                 "stats", "last_ns", "sessions", "route")

    def __init__(self, c: TreeConfig, classes: PathClasses, stats: "TreeStats | None" = None) -> None:
        self.c, self.classes = c, classes
        # path -> packed write; (dev << 64 | ino) -> (packed write, path); tgid -> (packed exec,
        # its image: the interned exe); tgid -> (packed exec, interpreter, script argument, path
        # suffix or None). An image also leaves at its process's exit (not every exit is seen:
        # the horizon bounds them too, so a busy tree does not fill the index with the dead).
        self.written, self.written_ids, self.procs, self.scripts = _Index(), _Index(), _Index(), _Index()
        self.last_connect: Ref | None = None
        self.last_exec: Ref | None = None
        self.last_sensitive: Ref | None = None
        self.last_credential: Ref | None = None
        self.bursts = self.new_bursts()
        self.overflowed: Ref | None = None      # the first event that evicted an entry
        self.stats = stats if stats is not None else TreeStats()
        self.last_ns = 0              # analyzer clock of the latest event (expiry)
        self.sessions = 0             # open sessions using this tree
        self.route = 0                # its shard (else its session id): who owns it on restore

    def new_bursts(self) -> tuple["_Burst", "_Burst", "_Burst"]:
        th, window = self.c.thresholds, self.c.burst_ns
        return (_Burst(th[0], window), _Burst(th[1], window), _Burst(th[2], window))

    def fold(self, e: RecentEvent, ev: dict[str, Any], proc: ProcessState, m: SessionMarks,
             hidden: Any = None) -> None:
        """Match one event against the tree's history, then remember it. ``e`` is classified;
        ``hidden``: the event's ``hidden`` reason (such an open only feeds the written index).

        Opens, nine events in ten, are handled inline: one call per event on the hot path."""
        kind = e.kind
        if kind == OPEN:
            bits, ts = e.cls, e.ts_ns
            ref: Ref = (ts, e.tgid, OPEN, e.path)
            if e.write:
                self._written(e, ev, ref, m)
            if not hidden:
                if self.scripts.items and e.tgid in self.scripts.items:
                    self._script_opened(e, ref, m)
                if e.sensitive:
                    self._sensitive(ts, ref, m)
                if bits & _OPEN_CLASSES:
                    self._open_classes(bits, e, proc, ref, m)
                if e.burst_kept:             # bursts[0].push, inline
                    burst = self.bursts[0]
                    last = burst.last
                    first = last[0] if len(last) == last.maxlen else None
                    last.append(ref)
                    if burst.threshold <= 1:
                        m.hit(B_OPEN, (ref,))
                    elif first is not None and ts - first[0] <= burst.window_ns:
                        m.hit(B_OPEN, (first, ref))
        elif kind == EXEC:
            self._exec(e, ev, proc, m)
        elif kind == CONNECT or kind == SEND:
            self._connect(e, ev, m)
        elif kind == EXIT:
            if int_field(ev.get("tid"), e.tgid) == e.tgid:
                self.procs.items.pop(e.tgid, None)
                self.scripts.items.pop(e.tgid, None)
        else:
            self._file_change(e, ev, m)
        if self.overflowed and not m.bits & OVF:
            m.hit(OVF, (self.overflowed,))       # the event that first evicted, as evidence

    def _remember(self, index: _Index, key: Any, value: Any, ref: Ref, m: SessionMarks) -> None:
        if index.put(key, value, ref[0], self.c):
            self.stats.overflows += 1         # evicted before the horizon: counted, flagged
            if self.overflowed is None:
                self.overflowed = ref
            m.hit(OVF, (ref,))

    def _written_ref(self, path: str, ts: int) -> Ref | None:
        value = self.written.get(path, ts, self.c.horizon_ns)
        return None if value is None else _unpack(value, path)

    # ---------------------------------------------------------------- opens

    def _written(self, e: RecentEvent, ev: dict[str, Any], ref: Ref, m: SessionMarks) -> None:
        """A write-intent open (hidden ones too): remembered by path and identity."""
        packed = _pack(ref[0], ref[1], OPEN)
        self._remember(self.written, e.path, packed, ref, m)
        ident = _identity(ev)
        if ident is not None:
            self._remember(self.written_ids, ident, (packed, e.path), ref, m)
        if e.cls & PERSISTENCE:
            m.hit(PW, (ref,))
        if e.cls & LOG and e.flags & O_TRUNC:
            m.hit(LT, (ref,))

    def _sensitive(self, ts: int, ref: Ref, m: SessionMarks) -> None:
        window = self.c.sensitive_ns
        if _within(self.last_connect, ts, window):
            m.hit(STN, (ref, self.last_connect))
        if _within(self.last_exec, ts, window):
            m.hit(STE, (ref, self.last_exec))
        self.last_sensitive = ref

    def _open_classes(self, bits: int, e: RecentEvent, proc: ProcessState, ref: Ref,
                      m: SessionMarks) -> None:
        if bits & DELETED:
            m.hit(ODP, (ref,))
        if bits & SECURITY_TOOL:
            m.hit(STD, (ref,))
        if bits & CREDENTIAL and e.flags & O_ACCMODE != O_WRONLY:
            if not self.classes.legitimate_reader(e.path, proc.uid, self._exe_of(e.tgid, proc)):
                m.hit(CA, (ref,))
                if _within(self.last_connect, e.ts_ns, self.c.sensitive_ns):
                    m.hit(CTN, (ref, self.last_connect))
                self.last_credential = ref

    def _script_opened(self, e: RecentEvent, ref: Ref, m: SessionMarks) -> None:
        """An interpreter opened the script it was given (``sh x.sh`` opens ``x.sh``)."""
        packed, interpreter, script, suffix = self.scripts.items[e.tgid]
        if not e.path.endswith(suffix or "/" + script) and e.path != script:   # != : unresolved
            return
        del self.scripts.items[e.tgid]
        written = self._written_ref(e.path, e.ts_ns)
        if written is not None:
            m.hit(WTI, (written, _unpack(packed, interpreter), ref))

    # ---------------------------------------------------------------- execs

    def _exec(self, e: RecentEvent, ev: dict[str, Any], proc: ProcessState, m: SessionMarks) -> None:
        c, ts = self.c, e.ts_ns
        exe = e.exe[:-10] if e.exe.endswith(" (deleted)") else e.exe
        ref: Ref = (ts, e.tgid, EXEC, e.path or exe)
        name = basename(e.path) or basename(exe)
        self._remember(self.procs, e.tgid, (_pack(ts, e.tgid, EXEC), sys.intern(exe or e.path)), ref, m)
        written = (self._written_ref(e.path, ts) if e.path else None) \
            or (self._written_ref(exe, ts) if exe and exe != e.path else None)
        if written is None:
            ident = _identity(ev)
            by_id = self.written_ids.get(ident, ts, c.horizon_ns) if ident is not None else None
            written = _unpack(*by_id) if by_id is not None else None
        if written is not None:
            m.hit(WTE, (written, ref))
        self.scripts.items.pop(e.tgid, None)
        if proc.role:
            return                       # the runtime's own image, wrapper, routine: identity only
        if _within(self.last_connect, ts, c.horizon_ns):
            m.hit(CTE, (self.last_connect, ref))
        if _within(self.last_sensitive, ts, c.sensitive_ns):
            m.hit(STE, (self.last_sensitive, ref))
        self.last_exec = ref
        hit = self.bursts[2].push(ref)
        if hit is not None:
            m.hit(B_EXEC, hit)
        self._exec_names(e, proc, name, ref, m)

    def _exec_names(self, e: RecentEvent, proc: ProcessState, name: str, ref: Ref, m: SessionMarks) -> None:
        """Security-tool discovery by argv; an interpreter's script argument."""
        c = self.c
        if c.security_tools and not m.bits & STD and any(
                not c.security_tools.isdisjoint(tokens(a)) for a in proc.args):
            m.hit(STD, (ref,))
        family = _family(name, c)
        if family is None:
            return
        script = script_argument(family, proc.args)
        if not script:
            return
        if script.startswith("/"):
            written = self._written_ref(normalise(script), e.ts_ns)
            if written is not None:
                m.hit(WTI, (written, ref))
            return
        suffix = normalise(script, "/")           # "./x.sh" -> "/x.sh": how its abspath ends
        pending = (_pack(e.ts_ns, e.tgid, EXEC), sys.intern(ref[3]), script,
                   None if suffix == "/" + script else suffix)
        self._remember(self.scripts, e.tgid, pending, ref, m)

    # ---------------------------------------------------------------- network, files

    def _connect(self, e: RecentEvent, ev: dict[str, Any], m: SessionMarks) -> None:
        c, ts = self.c, e.ts_ns
        ref: Ref = (ts, e.tgid, e.kind, addr_text(e.addr, e.port))
        if _within(self.last_sensitive, ts, c.sensitive_ns):
            m.hit(STN, (self.last_sensitive, ref))
        if _within(self.last_credential, ts, c.sensitive_ns):
            m.hit(CTN, (self.last_credential, ref))
        image = self.procs.items.get(e.tgid) or self.procs.items.get(int_field(ev.get("ppid"), -1))
        if (basename(image[1]) if image else text(ev.get("comm"))) in c.shells:
            m.hit(SN, (ref,))
        if e.kind == CONNECT:
            self.last_connect = ref
            if e.burst_kept:
                hit = self.bursts[1].push(ref)
                if hit is not None:
                    m.hit(B_CONNECT, hit)

    def _file_change(self, e: RecentEvent, ev: dict[str, Any], m: SessionMarks) -> None:
        """rename, unlink, truncate, chmod (schema 2)."""
        kind, ref = e.kind, (e.ts_ns, e.tgid, e.kind, e.path)
        bits = e.cls
        if kind == RENAME:
            new_path, _ = event_path(ev, "new_path")
            new_bits = self.classes.bits(new_path, int_field(ev.get("uid"), -1)) if new_path else 0
            ref = (e.ts_ns, e.tgid, RENAME, new_path)
            if new_path:
                self._remember(self.written, new_path, _pack(e.ts_ns, e.tgid, RENAME), ref, m)
            if new_bits & PERSISTENCE:
                m.hit(PW, (ref,))
            if (bits | new_bits) & LOG:
                m.hit(LT, (ref,))
        elif kind in (UNLINK, TRUNCATE) and bits & LOG:
            m.hit(LT, (ref,))
        elif kind == CHMOD and bits & PERSISTENCE:
            m.hit(PW, (ref,))

    def _exe_of(self, tgid: int, proc: ProcessState) -> str:
        """The real binary of a process of the tree (its own exec, here or in an earlier
        session; else what this session saw)."""
        image = self.procs.items.get(tgid)
        return image[1] if image is not None else (proc.exe or proc.exec_path)


def _identity(ev: dict[str, Any]) -> int | None:
    """(dev, ino) of a write-intent open or an exec, as one int (dev << 64 | ino)."""
    ino, dev = ev.get("ino"), ev.get("dev")
    if type(ino) is int and type(dev) is int and ino > 0 and dev >= 0:
        return (dev << 64) | ino
    return None


def _family(name: str, c: TreeConfig) -> str | None:
    """``shell``, an interpreter's name, or None (``python3.11`` counts as ``python3``)."""
    if name in c.shells:
        return "shell"
    if name in c.interpreters:
        return name
    stem = name.rstrip("0123456789.")
    if stem != name and (stem in c.interpreters or stem + "3" in c.interpreters):
        return stem
    return None


class TreeStats:
    """Counters shared by every tree of a store (heartbeat ``history_overflows``)."""

    __slots__ = ("overflows",)

    def __init__(self) -> None:
        self.overflows = 0


class TreeStore:
    """Every live tree of this analyzer instance."""

    __slots__ = ("c", "classes", "trees", "stats")

    def __init__(self, a: Analysis, classes: PathClasses) -> None:
        self.c, self.classes = TreeConfig.of(a), classes
        self.trees: dict[int, TreeHistory] = {}
        self.stats = TreeStats()

    def get(self, key: int, route: int = 0) -> TreeHistory:
        """The tree ``key`` (made on first use; ``route``: its shard, for checkpoints)."""
        tree = self.trees.get(key)
        if tree is None:
            tree = self.trees[key] = TreeHistory(self.c, self.classes, self.stats)
            tree.route = route
        return tree

    def reconfigure(self, a: Analysis, classes: PathClasses) -> None:
        """A reload: new windows, caps and classes; the indices are kept, bursts start over."""
        self.c, self.classes = TreeConfig.of(a), classes
        for tree in self.trees.values():
            tree.c, tree.classes = self.c, classes
            tree.bursts = tree.new_bursts()

    def release(self, key: int) -> None:
        """A session of the tree closed; a per-session tree (no ``tree_id``) goes with it."""
        tree = self.trees.get(key)
        if tree is None:
            return
        tree.sessions -= 1
        if key < 0 and tree.sessions <= 0:
            del self.trees[key]

    def expire(self, now_ns: int) -> int:
        """Drop trees with no open session and no event for longer than the horizon."""
        horizon = self.c.horizon_ns
        stale = [k for k, t in self.trees.items() if t.sessions <= 0 and now_ns - t.last_ns > horizon]
        for k in stale:
            del self.trees[k]
        return len(stale)


def tree_key(ev: dict[str, Any], session_id: int) -> int:
    """The tree's ``tree_id`` (>= 0), else the session's own negative key."""
    tid = ev.get("tree_id")
    return tid if type(tid) is int and tid >= 0 else -1 - session_id

