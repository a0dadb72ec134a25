"""history.* flags (docs/original.md §8.3): recomputed from scratch over the session's window.

The window is the session's last ``recent_event_limit`` accepted events, in arrival order, across
all its processes. So history flags can turn false again when old events leave the window (a rule
that already scored keeps its score, §10). Semantics kept from the original on purpose:

* ``connect_then_exec``: a connect, then any later exec; no time window, no process relation.
* ``sensitive_then_network`` / ``sensitive_then_execve``: a sensitive open and a connect (exec)
  within ``sensitive_history_window_seconds`` of each other, in EITHER order despite the name.
* ``burst_*``: ``threshold`` consecutive kept events of the kind within ``burst_window_seconds``;
  routine opens and local/private connects are not counted.
* ``write_then_exec_same_path``: a write-intent open of P, then a later exec whose path is exactly
  P (``bash P`` does not match: its exec path is /bin/bash).
* ``opened_deleted_path``: any of a process's last N opens has " (deleted)" in its path (this one
  looks at the per-process open lists, not the window).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from analyzer.path_classes import BURST_KEPT, SENSITIVE, PathClasses, burst_ignorable_open
from analyzer.paths import has_write_intent, is_sensitive
from analyzer.session_state import CONNECT, EXEC, EXIT, OPEN, RecentEvent, SessionState, int_field, open_fields
from policy import Analysis

__all__ = ["HistoryFlags", "history_flags", "classify", "Classifier", "burst", "burst_ignorable_open",
           "burst_ignorable_connect", "NS_PER_S", "HISTORY_FIELDS", "HISTORY_BIT", "ORIGINAL_MASK"]

NS_PER_S = 1_000_000_000

_PRIVATE_V4 = tuple(ipaddress.ip_network(n) for n in
                    ("169.254.0.0/16", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


@dataclass(frozen=True, slots=True)
class HistoryFlags:
    """Every history field rules can name. The first eight are the original's; in
    ``history_mode: "original"`` they come from the window (this module, history_window.py),
    in ``"indexed"`` from the per-tree indices (tree_history.py), which give all the others in
    both modes."""

    connect_then_exec: bool = False
    sensitive_then_network: bool = False
    sensitive_then_execve: bool = False
    burst_open: bool = False
    burst_connect: bool = False
    burst_exec: bool = False
    write_then_exec_same_path: bool = False
    opened_deleted_path: bool = False
    overflow: bool = False
    credential_access: bool = False
    credential_then_network: bool = False
    persistence_write: bool = False
    setuid_created: bool = False
    foreign_process_read: bool = False
    log_tampering: bool = False
    security_tool_discovery: bool = False
    udp_exfil: bool = False
    raw_socket: bool = False
    bind_shell: bool = False
    shell_network: bool = False
    memfd_created: bool = False
    written_then_interpreted: bool = False
    burst_interpreter_exec: bool = False
    inline_network_spawn: bool = False
    discovery_burst: bool = False
    bulk_replace: bool = False

    def as_map(self) -> dict[str, bool]:
        return {name: getattr(self, name) for name in HISTORY_FIELDS}

    def bits(self) -> int:
        return sum(1 << i for i, name in enumerate(HISTORY_FIELDS) if getattr(self, name))

    @staticmethod
    def from_bits(bits: int) -> "HistoryFlags":
        """The flags of a bitmask (bit i = HISTORY_FIELDS[i]); one shared object per value."""
        flags = _BY_BITS.get(bits)
        if flags is None:
            if len(_BY_BITS) >= 4096:
                _BY_BITS.clear()
            flags = _BY_BITS[bits] = HistoryFlags(*(bool(bits >> i & 1) for i in range(len(HISTORY_FIELDS))))
        return flags


HISTORY_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(HistoryFlags))
HISTORY_BIT: dict[str, int] = {name: 1 << i for i, name in enumerate(HISTORY_FIELDS)}
ORIGINAL_MASK = (1 << 8) - 1         # the eight original fields, in their original order
_BY_BITS: dict[int, HistoryFlags] = {}


def classify(e: RecentEvent, a: Analysis) -> RecentEvent:
    """Annotate a window entry once: sensitive open, kept for its burst, write-intent open."""
    if e.kind == OPEN:
        return replace(e, sensitive=is_sensitive(e.path, a.sensitive_path_prefixes,
                                                 a.sensitive_path_patterns),
                       burst_kept=not burst_ignorable_open(e.path), write=has_write_intent(e.flags))
    if e.kind == CONNECT:
        return replace(e, sensitive=False, burst_kept=not burst_ignorable_connect(e.addr, e.port),
                       write=False)
    return replace(e, sensitive=False, burst_kept=e.kind == EXEC, write=False)


def history_flags(session: SessionState, a: Analysis) -> HistoryFlags:
    """All eight flags over the window (entries already classified, see :func:`classify`)."""
    events = session.recent
    window_ns = a.burst_window_seconds * NS_PER_S
    sens_window_ns = a.sensitive_history_window_seconds * NS_PER_S
    opens: list[int] = []
    connects: list[int] = []
    execs: list[int] = []
    for e in events:
        if e.burst_kept:
            (opens if e.kind == OPEN else connects if e.kind == CONNECT else execs).append(e.ts_ns)
    return HistoryFlags(
        connect_then_exec=_connect_then_exec(events),
        sensitive_then_network=_near_either_order(events, CONNECT, sens_window_ns),
        sensitive_then_execve=_near_either_order(events, EXEC, sens_window_ns),
        burst_open=burst(opens, a.burst_open_threshold, window_ns),
        burst_connect=burst(connects, a.burst_connect_threshold, window_ns),
        burst_exec=burst(execs, a.burst_exec_threshold, window_ns),
        write_then_exec_same_path=_write_then_exec(events),
        opened_deleted_path=session.deleted_opens > 0,
    )


def _connect_then_exec(events: Iterable[RecentEvent]) -> bool:
    seen_connect = False
    for e in events:
        if e.kind == CONNECT:
            seen_connect = True
        elif e.kind == EXEC and seen_connect:
            return True
    return False


def _near_either_order(events: Iterable[RecentEvent], other: str, window_ns: int) -> bool:
    """A sensitive open and an ``other`` event within ``window_ns``, compared while scanning:
    each sensitive open with the latest earlier ``other``, each ``other`` with the latest earlier
    sensitive open (§8.3). ``window_ns <= 0`` means unlimited."""
    last_sens: int | None = None
    last_other: int | None = None
    for e in events:
        if e.sensitive:
            if last_other is not None and _within(e.ts_ns, last_other, window_ns):
                return True
            last_sens = e.ts_ns
        elif e.kind == other:
            if last_sens is not None and _within(e.ts_ns, last_sens, window_ns):
                return True
            last_other = e.ts_ns
    return False


def _within(a_ns: int, b_ns: int, window_ns: int) -> bool:
    return window_ns <= 0 or abs(a_ns - b_ns) <= window_ns


def burst(times_ns: Sequence[int], threshold: int, window_ns: int) -> bool:
    """Some run of ``threshold`` consecutive times spans at most ``window_ns``."""
    if threshold <= 1:
        return True
    return any(times_ns[i + threshold - 1] - times_ns[i] <= window_ns
               for i in range(len(times_ns) - threshold + 1))


def burst_ignorable_connect(addr: str, port: int) -> bool:
    """Loopback, link-local and private IPv4 (DNS to them included); unparsable is NOT ignored."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    if ip.is_loopback:
        return True
    return ip.version == 4 and any(ip in net for net in _PRIVATE_V4)


def _write_then_exec(events: Iterable[RecentEvent]) -> bool:
    written: set[str] = set()
    for e in events:
        if e.write and e.path:
            written.add(e.path)
        elif e.kind == EXEC and e.path in written:
            return True
    return False


class Classifier:
    """:func:`classify` with the analysis values fixed and per-path answers remembered.

    An agent opens the same libraries, configs and sockets over and over; the prefix, pattern and
    routine-file tests (and parsing a connect's address) then run once per distinct path, not once
    per event (analyzer/path_classes.py holds the per-path bitmask of every class the flags use).
    Answers depend only on the path (address), the uid and the analysis values, which are fixed
    for the life of a Classifier (a reload makes a new one). Bounded: cleared when full.
    """

    __slots__ = ("a", "cache_limit", "classes", "_connects", "unresolved")

    CACHE_PATH_MAX = PathClasses.CACHE_PATH_MAX

    def __init__(self, a: Analysis, cache_limit: int = 8192, classes: PathClasses | None = None) -> None:
        self.a, self.cache_limit = a, cache_limit
        self.classes = classes if classes is not None else PathClasses(a, cache_limit)
        self._connects: dict[str, bool] = {}
        self.unresolved = 0            # relative paths the kernel could not resolve (counter)

    def __call__(self, e: RecentEvent) -> RecentEvent:
        """Re-classify a window entry (after a reload or a restore; its uid is not kept)."""
        kind = e.kind
        if kind == OPEN:
            bits = self.classes.bits(e.path, -1)
            return RecentEvent(OPEN, e.tgid, e.ts_ns, e.path, e.exe, e.flags, e.mode, e.addr, e.port,
                               bool(bits & SENSITIVE), bool(bits & BURST_KEPT),
                               has_write_intent(e.flags), e.resolved, bits)
        if kind == CONNECT:
            return RecentEvent(CONNECT, e.tgid, e.ts_ns, e.path, e.exe, e.flags, e.mode, e.addr,
                               e.port, False, self._connect(e.addr, e.port), False, e.resolved)
        kept = kind == EXEC
        if e.sensitive or e.write or e.burst_kept is not kept:
            return replace(e, sensitive=False, burst_kept=kept, write=False)
        return e

    def entry(self, ev: dict[str, Any]) -> RecentEvent:
        """The classified window entry of one event: built once and annotated before it enters
        any window (``self(RecentEvent.from_event(ev))`` would build it twice)."""
        if ev["kind"] == OPEN:
            return self.open_entry(ev)
        e = RecentEvent.from_event(ev)
        kind = e.kind
        if kind == CONNECT:
            e.burst_kept = self._connect(e.addr, e.port)
        elif kind == EXEC:
            e.burst_kept = True
        elif kind != EXIT and e.path:        # rename, unlink, truncate, chmod
            uid = ev.get("uid")
            e.cls = self.classes.bits(e.path, uid if type(uid) is int else -1)
        if not e.resolved:
            self.unresolved += 1
        return e

    def open_entry(self, ev: dict[str, Any]) -> RecentEvent:
        """An open's entry, classified as it is built: opens are nine events in ten, and one
        positional construction costs half of a construction plus four attribute writes."""
        get = ev.get
        tgid, ts, uid = get("tgid"), get("ts_ns"), get("uid")
        if type(tgid) is not int or type(ts) is not int:
            tgid, ts = int_field(tgid), int_field(ts)
        path, resolved, flags, mode = open_fields(ev)
        if type(uid) is not int:
            uid = -1
        cached = self.classes.by_uid.get(uid)     # the hit inline
        bits = cached.get(path) if cached is not None else None
        if bits is None:
            bits = self.classes.bits(path, uid)
        if not resolved:
            self.unresolved += 1
        return RecentEvent(OPEN, tgid, ts, path, "", flags, mode, "", 0, bits & SENSITIVE != 0,
                           bits & BURST_KEPT != 0, has_write_intent(flags), resolved, bits)

    def _connect(self, addr: str, port: int) -> bool:
        kept = self._connects.get(addr)
        if kept is None:
            kept = not burst_ignorable_connect(addr, port)
            if len(addr) <= self.CACHE_PATH_MAX:
                if len(self._connects) >= self.cache_limit:
                    self._connects.clear()
                self._connects[addr] = kept
        return kept
