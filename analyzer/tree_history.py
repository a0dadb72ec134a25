"""History an attacker cannot push out: time-bounded indices per agent tree.

The original derives ``history.*`` from a session's last 64 events, so 80 unrelated opens
between a write and its exec (or a session boundary: an idle gap, a detached process) hide the
pair. Here every tree (the sessionizer's ``tree_id``; the session itself when an event has none)
keeps what later events are matched against, by **time**, not by count:

* written files: path -> the write, and (dev, ino) -> the write. Write-intent opens, including
  those a noise filter ``hidden`` from the logs, and rename targets; matched by an exec's path,
  its ``exe`` (fd execs; ``" (deleted)"`` stripped), its (dev, ino), or the script operand of a
  shell or interpreter (``sh /tmp/d/p.sh`` runs /tmp/d/p.sh);
* the latest connect, exec, sensitive open and credential read (each pair flag only needs the
  partner closest in time, as the original's window did);
* burst counters per kind: the last ``threshold - 1`` kept events of the kind, so other kinds
  never dilute a burst; one more for shells and interpreters started by a shell or interpreter;
* per process: its image (exec'd binary, flags, its stdout pipe), and an interpreter's pending
  relative script operand (``sh x.sh``: matched when it opens the script, so the name resolves);
* the bus-schema-2 signals (analyzer/tree_signals.py).

Windows: write->exec and connect->exec within ``history_horizon_seconds``; sensitive/credential
pairs within ``sensitive_history_window_seconds`` either order; bursts within
``burst_window_seconds``. Each index is bounded by its cap (analyzer/tree_index.py), entries
older than the horizon are pruned as new ones arrive, and an eviction is never silent:
``history.overflow`` becomes true in the session whose event evicted and in every later session
of that tree (the tree's history is no longer complete).

Flags land in the session of the event that completes the pattern (sticky; the partner may be
in an earlier session of the tree). :class:`TreeStore` drops a tree with no open session and no
event for longer than the horizon, so memory is bounded by the caps times the live trees.
"""

from __future__ import annotations

import sys
from typing import Any

from analyzer import tree_signals as sig
from analyzer import tree_spawns as spawns
from analyzer.activity_bursts import ActivityBursts
from analyzer.evidence import Ref, addr_text
from analyzer.history_flags import HISTORY_BIT
from analyzer.path_classes import (CREDENTIAL, DELETED, FOREIGN_PROC, HIDDEN, LOG, PERSISTENCE,
                                   SECURITY_TOOL, SUSPICIOUS, SYSTEM, PathClasses, tokens)
from analyzer.paths import O_ACCMODE, O_TRUNC, O_WRONLY
from analyzer.scripts import INLINE, SCRIPT, program_source
from analyzer.session_state import (CHMOD, CONNECT, EXEC, EXIT, OPEN, RENAME, SEND, TRUNCATE,
                                    UNLINK, ProcessState, RecentEvent, basename, event_path,
                                    int_field, text)
from analyzer.tree_index import (X_BIT, Burst, Index, SessionMarks, TreeConfig, pack, unpack,
                                 path_key, within)
from bus.paths import normalise
from policy import Analysis

__all__ = ["TreeHistory", "TreeStore", "SessionMarks", "TreeConfig", "tree_key", "identity"]

_BIT = HISTORY_BIT
CTE, STN, STE = _BIT["connect_then_exec"], _BIT["sensitive_then_network"], _BIT["sensitive_then_execve"]
B_OPEN, B_CONNECT, B_EXEC = _BIT["burst_open"], _BIT["burst_connect"], _BIT["burst_exec"]
WTE, ODP, OVF = _BIT["write_then_exec_same_path"], _BIT["opened_deleted_path"], _BIT["overflow"]
CA, CTN, PW = _BIT["credential_access"], _BIT["credential_then_network"], _BIT["persistence_write"]
LT, STD = _BIT["log_tampering"], _BIT["security_tool_discovery"]
SN, WTI = _BIT["shell_network"], _BIT["written_then_interpreted"]
DSC, BRP = _BIT["discovery_burst"], _BIT["bulk_replace"]
_OPEN_CLASSES = DELETED | SECURITY_TOOL | CREDENTIAL | FOREIGN_PROC
_X_SUSPICIOUS, _X_HIDDEN = X_BIT["execution.suspicious_path_exec"], X_BIT["execution.hidden_path_exec"]
_X_MASQUERADE = X_BIT["execution.masquerade"]
_X_PRELOAD = X_BIT["execution.preload_injection"]
# The dynamic loader's system-wide preload list: every program started after a write to it loads
# the libraries it names, with no LD_* variable an exec could show.
LD_SO_PRELOAD = "/etc/ld.so.preload"
_NAMES_KEPT = 256             # written paths remembered by text, for the evidence of (dev, ino) matches
_SIGNAL_KINDS = frozenset({"memfd", "socket", "ptrace", "vm_read", "listen", "bind"})


class TreeHistory:
    """The indices of one agent tree (see the module docstring)."""

    __slots__ = ("c", "classes", "written", "written_ids", "names", "procs", "scripts", "sig",
                 "last_connect", "last_exec", "last_sensitive", "last_credential", "bursts",
                 "overflowed", "stats", "last_ns", "sessions", "route", "acts")

    def __init__(self, c: TreeConfig, classes: PathClasses, stats: "TreeStats | None" = None) -> None:
        self.c, self.classes = c, classes
        # path_key(path) -> packed write; (dev << 64 | ino) -> packed write; tgid -> (packed exec
        # time | flags, its image: the interned resolved executable[, its stdout pipe inode]);
        # tgid -> (packed exec, interpreter, operand, path suffix or None). An image also leaves
        # at its process's exit (not every exit is seen: the horizon bounds them too).
        self.written, self.written_ids = Index(c.cap), Index(c.cap)
        self.names: dict[int, str] = {}         # path_key -> path, the last _NAMES_KEPT writes
        self.procs, self.scripts = Index(c.procs_cap), Index(c.scripts_cap)
        self.sig: sig.TreeSignals | None = None
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
        self.acts: ActivityBursts | None = None   # discovery and bulk replacement (made on use)

    def activity(self) -> ActivityBursts:
        if self.acts is None:
            self.acts = ActivityBursts(self.c.burst_ns)
        return self.acts

    def new_bursts(self) -> tuple[Burst, Burst, Burst, Burst]:
        th, window = self.c.thresholds, self.c.burst_ns
        return (Burst(th[0], window), Burst(th[1], window), Burst(th[2], window), Burst(th[2], window))

    def signals(self) -> sig.TreeSignals:
        if self.sig is None:
            self.sig = sig.TreeSignals(self.c.small_cap, self.c.udp_cap)
        return self.sig

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
                    self._script_opened(e, proc, ref, m)
                if e.sensitive:
                    self._sensitive(ts, ref, m)
                if bits & _OPEN_CLASSES:
                    self._open_classes(bits, e, ev, proc, ref, m)
                if e.burst_kept:             # bursts[0].push, inline
                    burst = self.bursts[0]
                    last = burst.last
                    first = last[0] if len(last) == last.maxlen else None
                    last.append(ref)
                    if burst.threshold <= 1:
                        m.hit(B_OPEN, (ref,))
                    elif first is not None and not m.bits & B_OPEN and ts - first[0] <= burst.window_ns:
                        m.hit(B_OPEN, (first, ref))      # (already true: no evidence to build)
        elif kind == EXEC:
            self._exec(e, ev, proc, m)
        elif kind == CONNECT or kind == SEND:
            self._connect(e, ev, m)
        elif kind == EXIT:
            if int_field(ev.get("tid"), e.tgid) == e.tgid:
                self.procs.pop(e.tgid)
                self.scripts.pop(e.tgid)
        elif kind in _SIGNAL_KINDS:
            sig.signal_event(self, kind, ev, proc, _signal_ref(e, ev), m)
        else:
            self._file_change(e, ev, m)
        if self.overflowed and not m.bits & OVF:
            m.hit(OVF, (self.overflowed,))       # the event that first evicted, as evidence

    def remember(self, index: Index, key: Any, value: Any, ref: Ref, m: SessionMarks,
                 horizon_ns: int | None = None) -> None:
        if index.put(key, value, ref[0], self.c.horizon_ns if horizon_ns is None else horizon_ns):
            self.stats.overflows += 1         # evicted before the horizon: counted, flagged
            if self.overflowed is None:
                self.overflowed = ref
            m.hit(OVF, (ref,))

    def written_ref(self, path: str, ts: int) -> Ref | None:
        value = self.written.get(path_key(path), ts, self.c.horizon_ns)
        return None if value is None else unpack(value, path)

    def image_of(self, tgid: int, proc: ProcessState) -> str:
        """The real binary of a process of the tree (its own exec, here or in an earlier
        session; else what this session saw)."""
        image = self.procs.items.get(tgid)
        return image[1] if image is not None else (proc.exe or proc.exec_path)

    def family(self, name: str) -> str | None:
        """``shell``, an interpreter's name, or None (``python3.11`` counts as ``python3``)."""
        c = self.c
        if name in c.shells:
            return "shell"
        if name in c.interpreters:
            return name
        stem = name.rstrip("0123456789.")
        if stem != name and (stem in c.interpreters or stem + "3" in c.interpreters):
            return stem
        return None

    # ---------------------------------------------------------------- opens

    def _written(self, e: RecentEvent, ev: dict[str, Any], ref: Ref, m: SessionMarks) -> None:
        """A write-intent open (hidden ones too): remembered by path and identity."""
        packed = pack(ref[0], ref[1], OPEN)
        self._remember_write(e.path, packed, ref, m)
        ident = identity(ev)
        if ident is not None:
            self.remember(self.written_ids, ident, packed, ref, m)
        if e.cls & PERSISTENCE:
            m.hit(PW, (ref,))
            if e.path == LD_SO_PRELOAD:
                m.hit_x(_X_PRELOAD, (ref,))
        if e.cls & LOG and e.flags & O_TRUNC:
            m.hit(LT, (ref,))
        if "." in e.path:
            self.activity().written(e.path, ref[0])

    def _remember_write(self, path: str, packed: int, ref: Ref, m: SessionMarks) -> None:
        key = path_key(path)
        self.remember(self.written, key, packed, ref, m)
        names = self.names
        names[key] = path                   # a rewrite keeps its place: "the last" is approximate
        if len(names) > _NAMES_KEPT:
            del names[next(iter(names))]
        if ".so" in path:
            sig.library_written(self, path, packed, ref, m)

    def _sensitive(self, ts: int, ref: Ref, m: SessionMarks) -> None:
        window = self.c.sensitive_ns
        if within(self.last_connect, ts, window):
            m.hit(STN, (ref, self.last_connect))
        if within(self.last_exec, ts, window):
            m.hit(STE, (ref, self.last_exec))
        self.last_sensitive = ref

    def _open_classes(self, bits: int, e: RecentEvent, ev: dict[str, Any], proc: ProcessState,
                      ref: Ref, m: SessionMarks) -> None:
        if bits & DELETED:
            m.hit(ODP, (ref,))
        if bits & SECURITY_TOOL:
            m.hit(STD, (ref,))
        if bits & FOREIGN_PROC:
            sig.foreign_open(self, e.path, ev, self.image_of(e.tgid, proc), m, ref)
        if bits & CREDENTIAL and e.flags & O_ACCMODE != O_WRONLY and int_field(ev.get("ret"), 0) >= 0:
            # a refused or missing file read nothing (npm probing an absent ~/.npmrc)
            if not self.classes.legitimate_reader(e.path, proc.uid, self.image_of(e.tgid, proc)):
                m.hit(CA, (ref,))
                self.secret_read(ref, m)

    def secret_read(self, ref: Ref, m: SessionMarks) -> None:
        """A credential read, or another process's memory or environment read: paired with a
        connect either side of it for ``credential_then_network``."""
        if within(self.last_connect, ref[0], self.c.sensitive_ns):
            m.hit(CTN, (ref, self.last_connect))
        self.last_credential = ref

    def _script_opened(self, e: RecentEvent, proc: ProcessState, ref: Ref, m: SessionMarks) -> None:
        """An interpreter opened the script it was given (``sh x.sh`` opens ``x.sh``)."""
        packed, interpreter, script, suffix = self.scripts.items[e.tgid]
        if not e.path.endswith(suffix or "/" + script) and e.path != script:   # != : unresolved
            return
        self.scripts.pop(e.tgid)
        self._operand(e.path, unpack(packed, interpreter), proc, m, ref)

    # ---------------------------------------------------------------- execs

    def _exec(self, e: RecentEvent, ev: dict[str, Any], proc: ProcessState, m: SessionMarks) -> None:
        c, ts = self.c, e.ts_ns
        exe = e.exe[:-10] if e.exe.endswith(" (deleted)") else e.exe
        ref: Ref = (ts, e.tgid, EXEC, e.path or exe)
        name = basename(e.path) or basename(exe)
        family = self.family(name)
        if not proc.role:
            spawns.interpreter_burst(self, e, ev, proc, family, ref, m)
        self._exec_written(e, ev, exe, ref, m)
        self.scripts.pop(e.tgid)
        types, stdout_pipe = sig.exec_signals(self, ev, proc, family, ref, m)
        if proc.role != "routine":           # routine execs (uname -a) never pair, parent or connect
            inline = family is not None and program_source(family, proc.args)[0] == INLINE
            self._image(e.tgid, exe or e.path, name, types, proc.role == "agent", stdout_pipe, ref, m,
                        inline)
        if proc.role != "agent":             # `id` (a routine exec) run by fetched code counts
            spawns.inline_network_spawn(self, ev, ref, m)
            if name in c.discovery and not m.bits & DSC:
                hit = self.activity().discovered(name, ref, c.discovery_threshold)
                if hit is not None:
                    m.hit(DSC, hit)
        if proc.role:
            return                       # the runtime's own image, wrapper, routine: identity only
        if within(self.last_connect, ts, c.horizon_ns):
            m.hit(CTE, (self.last_connect, ref))
        if within(self.last_sensitive, ts, c.sensitive_ns):
            m.hit(STE, (self.last_sensitive, ref))
        self.last_exec = ref
        hit = self.bursts[2].push(ref)
        if hit is not None:
            m.hit(B_EXEC, hit)
        if c.security_tools and not m.bits & STD and any(
                not c.security_tools.isdisjoint(tokens(a)) for a in proc.args):
            m.hit(STD, (ref,))
        if family is not None:
            self._interpreted(e, proc, family, ref, m)

    def _exec_written(self, e: RecentEvent, ev: dict[str, Any], exe: str, ref: Ref, m: SessionMarks) -> None:
        """write->exec: the exec's path, its real file, or its (dev, ino) was written."""
        ts = e.ts_ns
        written = (self.written_ref(e.path, ts) if e.path else None) \
            or (self.written_ref(exe, ts) if exe and exe != e.path else None)
        if written is None:
            ident = identity(ev)
            by_id = self.written_ids.get(ident, ts, self.c.horizon_ns) if ident is not None else None
            if by_id is not None:
                written = self._named(by_id)
        if written is not None:
            m.hit(WTE, (written, ref))

    def _named(self, packed: int) -> Ref:
        """A write matched by (dev, ino): its path if one of the last writes, else ''."""
        for key, path in reversed(self.names.items()):
            if self.written.items.get(key) == packed:
                return unpack(packed, path)
        return unpack(packed, "")

    def _image(self, tgid: int, image: str, name: str, types: list[str], agent: bool,
               stdout_pipe: int | None, ref: Ref, m: SessionMarks, inline: bool = False) -> None:
        """Remember the process image: binary, flags, stdout pipe (and pair that pipe)."""
        flags = (sig.P_AGENT if agent else 0) | (sig.P_NETFED if sig.netfed(self, name, types) else 0) \
            | (sig.P_INLINE if inline else 0)
        old = self.procs.items.get(tgid)
        if old is not None and old[0] & sig.P_NETFED:
            flags |= sig.P_NETFED            # connected before this in-place exec
        image = sys.intern(image)
        value = (ref[0] << 25 | flags, image) if stdout_pipe is None else \
            (ref[0] << 25 | flags, image, stdout_pipe)
        self.remember(self.procs, tgid, value, ref, m)
        if stdout_pipe is not None:
            sig.writer_exec(self, stdout_pipe, flags, ref, m)

    def _interpreted(self, e: RecentEvent, proc: ProcessState, family: str, ref: Ref,
                     m: SessionMarks) -> None:
        """A shell or interpreter's script operand: absolute now; relative when it opens the
        file (the kernel resolves that open)."""
        kind, script = program_source(family, proc.args)
        if kind != SCRIPT or not script:
            return
        if script.startswith("/"):
            self._operand(normalise(script), ref, proc, m, ref)
            return
        suffix = normalise(script, "/")           # "./x.sh" -> "/x.sh": how its abspath ends
        pending = (pack(e.ts_ns, e.tgid, EXEC), sys.intern(ref[3]), script,
                   None if suffix == "/" + script else suffix)
        self.remember(self.scripts, e.tgid, pending, ref, m)

    def _operand(self, path: str, exec_ref: Ref, proc: ProcessState, m: SessionMarks,
                 ref: Ref) -> None:
        """The script a shell or interpreter runs: written_then_interpreted; in "indexed" mode
        also write->exec and the path flags of an exec of that file."""
        refs = (exec_ref,) if ref is exec_ref else (exec_ref, ref)
        written = self.written_ref(path, ref[0])
        if written is not None:
            m.hit(WTI, (written, *refs))
        if not self.c.operand_flags:
            return
        if written is not None:
            m.hit(WTE, (written, *refs))
        bits = self.classes.bits(path, proc.uid)
        if bits & SUSPICIOUS:
            m.hit_x(_X_SUSPICIOUS, refs)
        if bits & HIDDEN:
            m.hit_x(_X_HIDDEN, refs)
        if not bits & SYSTEM and basename(path) in self.c.known:
            m.hit_x(_X_MASQUERADE, refs)

    # ---------------------------------------------------------------- network, files

    def _connect(self, e: RecentEvent, ev: dict[str, Any], m: SessionMarks) -> None:
        c, ts = self.c, e.ts_ns
        ref: Ref = (ts, e.tgid, e.kind, addr_text(e.addr, e.port))
        if within(self.last_sensitive, ts, c.sensitive_ns):
            m.hit(STN, (self.last_sensitive, ref))
        if within(self.last_credential, ts, c.sensitive_ns):
            m.hit(CTN, (self.last_credential, ref))
        image = self.procs.items.get(e.tgid) or self.procs.items.get(int_field(ev.get("ppid"), -1))
        if (basename(image[1]) if image else text(ev.get("comm"))) in c.shells:
            m.hit(SN, (ref,))
        sig.connected(self, e.tgid, ref, m)
        if e.kind == CONNECT:
            self.last_connect = ref
            if e.burst_kept:
                hit = self.bursts[1].push(ref)
                if hit is not None:
                    m.hit(B_CONNECT, hit)
        elif int_field(ev.get("ret"), 0) >= 0:
            sig.udp_send(self, ev, ref, m)

    def _file_change(self, e: RecentEvent, ev: dict[str, Any], m: SessionMarks) -> None:
        """rename, unlink, truncate, chmod (schema 2)."""
        kind, ref = e.kind, (e.ts_ns, e.tgid, e.kind, e.path)
        bits = e.cls
        if kind == RENAME:
            new_path, _ = event_path(ev, "new_path")
            new_bits = self.classes.bits(new_path, int_field(ev.get("uid"), -1)) if new_path else 0
            ref = (e.ts_ns, e.tgid, RENAME, new_path)
            if new_path:
                self._remember_write(new_path, pack(e.ts_ns, e.tgid, RENAME), ref, m)
            if new_bits & PERSISTENCE:
                m.hit(PW, (ref,))
                if new_path == LD_SO_PRELOAD:
                    m.hit_x(_X_PRELOAD, (ref,))
            if (bits | new_bits) & LOG:
                m.hit(LT, (ref,))
        elif kind in (UNLINK, TRUNCATE) and bits & LOG:
            m.hit(LT, (ref,))
        elif kind == CHMOD:
            if bits & PERSISTENCE:
                m.hit(PW, (ref,))
            sig.setuid_chmod(ev, ref, m)
        if kind == UNLINK and self.acts is not None and int_field(ev.get("ret"), 0) >= 0 \
                and self.written_ref(e.path, e.ts_ns) is None:      # not a file the tree made itself
            hit = self.acts.unlinked(e.path, ref, self.c.replace_threshold)
            if hit is not None:
                m.hit(BRP, hit)


def _signal_ref(e: RecentEvent, ev: dict[str, Any]) -> Ref:
    """The evidence reference of a memfd, socket, ptrace, vm_read, listen or bind event."""
    kind = e.kind
    if kind == "memfd":
        what = "memfd:" + text(ev.get("name"))
    elif kind in ("ptrace", "vm_read"):
        what = str(int_field(ev.get("target"), 0))
    elif kind == "socket":
        what = f"family={int_field(ev.get('family'))} type={int_field(ev.get('type'))} " \
               f"protocol={int_field(ev.get('protocol'))}"
    else:
        what = addr_text(text(ev.get("addr")), int_field(ev.get("port")))
    return (e.ts_ns, e.tgid, kind, what)


def identity(ev: dict[str, Any]) -> int | None:
    """(dev, ino) of a write-intent open or an exec, as one int (dev << 64 | ino)."""
    ino, dev = ev.get("ino"), ev.get("dev")
    if type(ino) is int and type(dev) is int and ino > 0 and dev >= 0:
        return (dev << 64) | ino
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
            tree.written.cap = tree.written_ids.cap = self.c.cap
            tree.procs.cap, tree.scripts.cap = self.c.procs_cap, self.c.scripts_cap
            if tree.sig is not None:
                tree.sig.readers.cap = tree.sig.lib_dirs.cap = self.c.small_cap
                tree.sig.udp.cap = self.c.udp_cap

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
