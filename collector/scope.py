"""Which processes the collector traces: agent roots, their descendants, provisional roots.

The kernel keeps the tracked set (map ``tracked``: tgid -> root, depth, provisional); children
inherit at fork and leave at exit without user space. User space decides the roots:

* bootstrap: /proc is scanned after the probes are attached; every process matching a profile
  (comm, /proc/PID/exe, cmdline) becomes a root, and its live descendants are tracked.
* exec of a candidate: the kernel tracks a process provisionally when its post-exec comm is one
  of the profiles' ``root_comms()`` and reports the exec. :meth:`Scope.handle` confirms it with
  the full profile match, or removes it and every provisional descendant it forked meanwhile
  (their events are dropped here: they carry the rejected root).
* exec inside a tracked tree never starts a root, whatever profile it matches: an agent (or
  anything it runs) can start a binary named like an agent CLI with the CLI's arguments, and a
  new root there would split the tree's events away from its history. The process keeps its
  tree's root in the kernel map and in its events. The root process itself re-executing in place
  (``#!/usr/bin/env node`` -> ``env`` -> ``node``) stays the root it was: same profile, no second
  ``root`` event. Only an untracked process can become a root (by exec, or found in /proc).

A ``root`` event is published for every confirmed root. This module is the pure core: the kernel
map is reached through the small :class:`TrackedMap` protocol, so tests can pass a dict.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Protocol

from agents import Profile
from collector.decode import Decoded
from collector.proc_scan import ProcInfo, exe_of, read_proc

__all__ = ["Entry", "TrackedMap", "DictTrackedMap", "Scope", "REJECTED_TTL_S"]

REJECTED_TTL_S = 60.0     # how long events of a rejected provisional root are still recognised
DOUBTFUL_EVENTS_MAX = 4096  # events held for a script root until its interpreter's exec decides


@dataclass(frozen=True, slots=True)
class Entry:
    root: int
    depth: int
    provisional: bool


class TrackedMap(Protocol):
    """The kernel's ``tracked`` map as the scope needs it."""

    def set(self, tgid: int, entry: Entry) -> None: ...
    def delete(self, tgid: int) -> None: ...
    def items(self) -> list[tuple[int, Entry]]: ...


@dataclass
class DictTrackedMap:
    """An in-memory TrackedMap (tests, and ``--ebpf``-free dry runs)."""

    entries: dict[int, Entry] = field(default_factory=dict)

    def set(self, tgid: int, entry: Entry) -> None:
        self.entries[tgid] = entry

    def delete(self, tgid: int) -> None:
        self.entries.pop(tgid, None)

    def items(self) -> list[tuple[int, Entry]]:
        return list(self.entries.items())


def root_event(tgid: int, ppid: int, uid: int, comm: str, profile: str, reason: str, exe: str,
               argv: Iterable[str], ts_ns: int) -> dict[str, Any]:
    """A ``root`` event (bus/events.py): a process confirmed as an agent root."""
    return {"kind": "root", "ts_ns": ts_ns, "tgid": tgid, "tid": tgid, "ppid": ppid, "uid": uid,
            "comm": comm, "root": tgid, "profile": profile, "reason": reason, "exe": exe,
            "argv": list(argv)}


@dataclass(eq=False)
class Scope:
    """Roots and their confirmation; see the module docstring. The readers and clocks are
    parameters so tests can stand in for /proc and time."""

    profiles: tuple[Profile, ...]
    kmap: TrackedMap
    self_tgid: int
    _: KW_ONLY
    exe_reader: Callable[[int], str] = exe_of
    proc_reader: Callable[[int], ProcInfo | None] = read_proc
    alive: Callable[[int], bool] = lambda pid: os.path.exists(f"/proc/{pid}")
    clock: Callable[[], int] = time.time_ns
    monotonic: Callable[[], float] = time.monotonic
    # state: live roots (tgid -> profile name); confirmed roots, alive or not, and rejected
    # ones (tgid -> when, monotonic s); the provisional roots the last sweep saw; script roots'
    # held events; events of rejected or unknown provisional roots
    roots: dict[int, str] = field(default_factory=dict, init=False)
    confirmed: dict[int, float] = field(default_factory=dict, init=False)
    rejected: dict[int, float] = field(default_factory=dict, init=False)
    unconfirmed: set[int] = field(default_factory=set, init=False)
    doubtful: dict[int, list[dict[str, Any]]] = field(default_factory=dict, init=False)
    dropped_events: int = field(default=0, init=False)

    def root_comms(self) -> set[str]:
        out: set[str] = set()
        for p in self.profiles:
            out |= p.root_comms()
        return out

    def match(self, comm: str, exe: str, argv: Iterable[str]) -> Profile | None:
        args = list(argv)
        for p in self.profiles:
            if p.matches(comm, exe, args):
                return p
        return None

    # ---- start-up ---------------------------------------------------------------------

    def bootstrap(self, procs: dict[int, ProcInfo], extra: dict[int, str] | None = None) -> list[dict[str, Any]]:
        """Seed roots from a /proc scan (+ ``extra`` pid -> profile); returns root events."""
        events = []
        for pid, info in sorted(procs.items()):
            if pid == self.self_tgid:
                continue
            profile = (extra or {}).get(pid)
            if profile is None:
                p = self.match(info.comm, info.exe, info.argv)
                profile = p.name if p else None
            if profile is None:
                continue
            self.roots[pid] = profile
            self.kmap.set(pid, Entry(pid, 0, False))
            events.append(root_event(pid, info.ppid, info.uid, info.comm, profile, "bootstrap",
                                     info.exe, info.argv, self.clock()))
        self.adopt_descendants(procs)
        return events

    def adopt_descendants(self, procs: dict[int, ProcInfo]) -> int:
        """Track every live process below a tracked one (start-up only); returns how many added."""
        tracked = dict(self.kmap.items())
        children: dict[int, list[int]] = {}
        for pid, info in procs.items():
            children.setdefault(info.ppid, []).append(pid)
        added = 0
        stack = [(pid, e) for pid, e in tracked.items()]
        while stack:
            pid, entry = stack.pop()
            for child in children.get(pid, []):
                if child in tracked or child == self.self_tgid:
                    continue
                ce = Entry(entry.root, entry.depth + 1, entry.provisional)
                tracked[child] = ce
                self.kmap.set(child, ce)
                stack.append((child, ce))
                added += 1
        return added

    # ---- events -----------------------------------------------------------------------

    def handle(self, d: Decoded) -> list[dict[str, Any]]:
        """Events to publish for one kernel record (0, 1 or 2: an exec may add a ``root``)."""
        ev = d.event
        kind = ev["kind"]
        if kind == "exec":
            return self._exec(d)
        if d.provisional and ev["root"] not in self.confirmed:
            return self._hold(ev)
        if kind == "exit":
            self.roots.pop(ev["tgid"], None)
        return [ev]

    def _hold(self, ev: dict[str, Any]) -> list[dict[str, Any]]:
        """An event of an undecided provisional root: held if the root is doubtful, else dropped."""
        held = self.doubtful.get(ev["root"])
        if held is not None and len(held) < DOUBTFUL_EVENTS_MAX:
            held.append(ev)
        else:
            self.dropped_events += 1
        return []

    def _exec(self, d: Decoded) -> list[dict[str, Any]]:
        ev = d.event
        tgid = ev["tgid"]
        if d.provisional and ev["root"] == tgid and tgid not in self.roots:
            return self._candidate(d)
        if d.provisional and ev["root"] not in self.confirmed:
            return self._hold(ev)
        return [ev]                 # inside a tracked tree: never a new root (module docstring)

    def _exe(self, tgid: int, ev: dict[str, Any]) -> str:
        """What the exec ran, for profile matching and the ``root`` event: the exec'd path made
        absolute by the kernel (``abspath``, for ``./openclaw``), else as passed (or the file
        behind an exec'd fd). Not /proc/PID/exe: for a ``#!/usr/bin/env node`` script that is
        env, or already node, depending on timing; the script path is what the profile names."""
        return ev.get("abspath") or ev["exe"] or self.exe_reader(tgid)

    def _candidate(self, d: Decoded) -> list[dict[str, Any]]:
        ev = d.event
        tgid = ev["tgid"]
        exe = self._exe(tgid, ev)
        p = self.match(d.new_comm, exe, ev["argv"])
        if p is None:
            if ev["ret"] == 0 and _is_script_exec(ev):
                # #!/usr/bin/env node: the interpreter's exec, next, may match: hold, decide then
                self.doubtful.setdefault(tgid, []).append(ev)
            else:
                self.reject(tgid)
            return []
        held = self.doubtful.pop(tgid, [])
        self.confirm(tgid, p.name)
        return [*held, ev, root_event(tgid, ev["ppid"], ev["uid"], d.new_comm, p.name, "exec",
                                      exe, ev["argv"], ev["ts_ns"])]

    def confirm(self, tgid: int, profile: str) -> None:
        """provisional -> confirmed, for the root and what it forked meanwhile."""
        self.roots[tgid] = profile
        self.confirmed[tgid] = self.monotonic()
        self.rejected.pop(tgid, None)
        self.unconfirmed.discard(tgid)
        for pid, e in self.kmap.items():
            if e.root == tgid and e.provisional:
                self.kmap.set(pid, Entry(e.root, e.depth, False))
        # A script rejected at its first exec (#!/usr/bin/env node: comm "openclaw", exe the
        # script) can match at its second (node ...): by then its entry was removed.
        if tgid not in dict(self.kmap.items()) and self.alive(tgid):
            self.kmap.set(tgid, Entry(tgid, 0, False))

    def reject(self, tgid: int) -> None:
        """provisional -> untracked, for the root and what it forked meanwhile."""
        self.rejected[tgid] = self.monotonic()
        self.confirmed.pop(tgid, None)
        self.dropped_events += len(self.doubtful.pop(tgid, []))
        self.unconfirmed.discard(tgid)
        for pid, e in self.kmap.items():
            if e.root == tgid and e.provisional:
                self.kmap.delete(pid)

    # ---- housekeeping (once per heartbeat) -----------------------------------------------

    def sweep(self) -> tuple[int, list[dict[str, Any]]]:
        """Settle provisional roots whose exec record was lost; returns (tracked count, root events).

        A provisional root still unknown at two consecutive sweeps had its exec record dropped
        (ring buffer full): decide from /proc instead, so it is neither traced forever nor lost.
        """
        now = self.monotonic()
        for tgid, when in list(self.rejected.items()):
            if now - when > REJECTED_TTL_S:
                del self.rejected[tgid]
        for tgid in [t for t in self.roots if not self.alive(t)]:
            del self.roots[tgid]              # its exit record was lost (ring buffer full)
        for tgid, when in list(self.confirmed.items()):
            if tgid not in self.roots and now - when > REJECTED_TTL_S:
                del self.confirmed[tgid]
        items = self.kmap.items()
        events: list[dict[str, Any]] = []
        pending = set()
        for pid, e in items:
            if not e.provisional:
                continue
            if e.root in self.rejected:
                self.kmap.delete(pid)
            elif e.root in self.confirmed:
                # forked while confirm() was walking the map: confirmed now
                self.kmap.set(pid, Entry(e.root, e.depth, False))
            else:
                pending.add(e.root)
        for root in pending & self.unconfirmed:
            events.extend(self._settle_from_proc(root))
        for root in list(self.doubtful):
            if root not in pending:           # exited, or settled above, without a matching exec
                self.reject(root)
        self.unconfirmed = pending - set(self.confirmed) - set(self.rejected)
        return len(items), events

    def _settle_from_proc(self, tgid: int) -> list[dict[str, Any]]:
        info = self.proc_reader(tgid)
        p = self.match(info.comm, info.exe, info.argv) if info else None
        if info is None or p is None:
            self.reject(tgid)
            return []
        held = self.doubtful.pop(tgid, [])
        self.confirm(tgid, p.name)
        return [*held, root_event(tgid, info.ppid, info.uid, info.comm, p.name, "exec", info.exe,
                           info.argv, self.clock())]


def _is_script_exec(ev: dict[str, Any]) -> bool:
    """A ``#!`` script: the kernel put the interpreter first in the new image's argv, so
    argv[0] is not the exec'd path (only known for execs built at sched_process_exec)."""
    argv = ev["argv"]
    return bool(argv) and argv[0] != ev["path"] and os.path.basename(argv[0]) != os.path.basename(ev["path"])
