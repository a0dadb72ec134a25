"""The building blocks of a tree's history (analyzer/tree_history.py): bounded indices, packed
entries, burst counters, the analysis values they use, and a session's sticky marks.

Memory at the caps is the design constraint (docs/performance.md §4): an index entry is a plain
``dict`` slot holding small ints wherever possible.

* Written paths are keyed by a stable 60-bit hash of the path (:func:`path_key`), not by the
  path text: the text was most of an entry's ~200 bytes. A match is found by hashing the exec's
  path, so the match itself is exact for the same path; a collision (two different paths with
  the same 60-bit hash, odds ~1e-11 at a full index) can only make an exec match a write it did
  not follow, never hide a match. The hash is stable across restarts (blake2b), so checkpoints
  keep working.
* Values are packed ints ``ts_ns << 25 | tgid << 2 | kind`` (a tuple costs ~60 bytes more).
* Indices are insertion-ordered dicts, oldest first; a re-put moves the key to the end. Deleting
  from the front of a CPython dict leaves holes the next ``next(iter())`` scans over, so the dict
  is compacted after a quarter of its size in deletions (an OrderedDict, which avoids the scan,
  costs ~50 bytes more per entry).
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass
from typing import Any

from analyzer.evidence import Evidence, Ref
from analyzer.execution_flags import WELL_KNOWN_BINARIES
from analyzer.history_flags import HISTORY_BIT, NS_PER_S
from analyzer.session_state import EXEC, OPEN, RENAME
from policy import Analysis

__all__ = ["SessionMarks", "TreeConfig", "Index", "Burst", "pack", "unpack", "packed_ts",
           "path_key", "within", "X_BIT", "COMPACT_MIN"]

_NAME = {bit: "history." + name for name, bit in HISTORY_BIT.items()}

# Fields outside ``history`` that the tree sets (they need the tree's indices or see role execs
# too): their bit in SessionMarks.xbits, OR-ed into the session's execution/capability flags.
X_BIT: dict[str, int] = {name: 1 << i for i, name in enumerate((
    "execution.reverse_shell", "execution.pipe_to_shell", "execution.loader_hijack",
    "execution.suspicious_path_exec", "execution.hidden_path_exec", "execution.masquerade",
    "capability.privilege_gained", "execution.preload_injection"))}
_X_NAME = {bit: name for name, bit in X_BIT.items()}

COMPACT_MIN = 256             # deletions before a dict is compacted, at least


class SessionMarks:
    """One session's sticky history bits (``bits``), the other fields the tree set
    (``xbits``, :data:`X_BIT`), and their evidence."""

    __slots__ = ("bits", "xbits", "evidence")

    def __init__(self, bits: int = 0, evidence: Evidence | None = None, xbits: int = 0) -> None:
        self.bits, self.xbits = bits, xbits
        self.evidence = evidence if evidence is not None else Evidence()

    def hit(self, bit: int, refs: tuple[Ref | None, ...]) -> None:
        if not self.bits & bit:
            self.bits |= bit
            self.evidence.add(_NAME[bit], refs)

    def hit_x(self, bit: int, refs: tuple[Ref | None, ...]) -> None:
        if not self.xbits & bit:
            self.xbits |= bit
            self.evidence.add(_X_NAME[bit], refs)


def _share_of_cap(divisor: int) -> property:
    """A cap derived from ``TreeConfig.cap``: ``cap // divisor``, at least 1."""
    return property(lambda self: max(1, self.cap // divisor))


@dataclass(frozen=True, slots=True)
class TreeConfig:
    """The analysis values the indices use, in the units they compare, and each index's cap.

    ``history_index_cap`` (``cap``) bounds the indices that grow with what a tree does (written
    files and identities); the others are sized from it by what they hold (docs/analyzer.md,
    History indices): live process images half of it, interpreters between their exec and the
    open of their script an eighth, code-reading shells waiting for their pipe's writer and
    written library directories a sixteenth, UDP destinations a sixty-fourth.
    """

    horizon_ns: int
    sensitive_ns: int
    burst_ns: int
    cap: int
    thresholds: tuple[int, int, int]          # open, connect, exec
    shells: frozenset[str]
    interpreters: frozenset[str]
    security_tools: frozenset[str]
    network_tools: frozenset[str] = frozenset()
    udp_window_ns: int = 60 * NS_PER_S
    udp_bytes: int = 4096
    udp_names: int = 20
    operand_flags: bool = True                # "indexed" mode: a script operand is what runs
    known: frozenset[str] = WELL_KNOWN_BINARIES    # system names (masquerade), shells included
    discovery: frozenset[str] = frozenset()
    discovery_threshold: int = 5
    replace_threshold: int = 5

    @classmethod
    def of(cls, a: Analysis) -> "TreeConfig":
        return cls(a.history_horizon_seconds * NS_PER_S, a.sensitive_history_window_seconds * NS_PER_S,
                   a.burst_window_seconds * NS_PER_S, max(1, a.history_index_cap),
                   (a.burst_open_threshold, a.burst_connect_threshold, a.burst_exec_threshold),
                   frozenset(a.shell_names), frozenset(a.interpreter_names),
                   frozenset(a.security_tool_names), frozenset(a.network_tool_names),
                   a.udp_exfil_window_seconds * NS_PER_S, a.udp_exfil_bytes, a.udp_exfil_names,
                   a.history_mode != "original", WELL_KNOWN_BINARIES.union(a.shell_names),
                   frozenset(a.discovery_tool_names), a.discovery_threshold, a.bulk_replace_threshold)

    # the indices sized from ``cap`` by what they hold (see the class docstring)
    procs_cap = _share_of_cap(2)
    scripts_cap = _share_of_cap(8)
    small_cap = _share_of_cap(16)
    udp_cap = _share_of_cap(64)


# ---------------------------------------------------------------- packed entries

_KINDS = (OPEN, RENAME, EXEC)
_CODE = {OPEN: 0, RENAME: 1, EXEC: 2}
_TGID_MASK = (1 << 23) - 1            # pid_max is at most 2**22
_KEY_MASK = (1 << 60) - 1


def pack(ts: int, tgid: int, kind: str) -> int:
    return (ts << 25) | ((tgid & _TGID_MASK) << 2) | _CODE[kind]


def unpack(v: int, path: str) -> Ref:
    return (v >> 25, (v >> 2) & _TGID_MASK, _KINDS[v & 3], path)


def packed_ts(v: Any) -> int:
    return (v if type(v) is int else v[0]) >> 25


_KEY_CACHE: dict[str, int] = {}
_KEY_CACHE_MAX = 8192         # an agent writes and runs the same paths again and again


def path_key(path: str) -> int:
    """A stable 60-bit hash of ``path`` (see the module docstring); remembered per path, as the
    path classes are (a blake2b costs ~0.6 us, a lookup ~0.05)."""
    key = _KEY_CACHE.get(path)
    if key is None:
        raw = path.encode("utf-8", "surrogateescape")
        key = int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little") & _KEY_MASK
        if len(path) <= 512:
            if len(_KEY_CACHE) >= _KEY_CACHE_MAX:
                _KEY_CACHE.clear()
            _KEY_CACHE[path] = key
    return key


def within(a: Ref | None, ts: int, window_ns: int) -> bool:
    return a is not None and (window_ns <= 0 or abs(ts - a[0]) <= window_ns)


class Index:
    """Key -> value, oldest first; bounded by count (``cap``) and by time (entries older than the
    horizon go as new ones arrive). Values are packed ints or tuples that start with one."""

    __slots__ = ("items", "cap", "holes")

    def __init__(self, cap: int) -> None:
        self.items: dict[Any, Any] = {}
        self.cap = cap
        self.holes = 0                # deletions since the last compaction

    def put(self, key: Any, value: Any, ts: int, horizon_ns: int) -> bool:
        """Remember ``key``; True when the cap evicted an entry (younger than the horizon)."""
        items = self.items
        evicted = False
        if key in items:
            del items[key]                  # re-inserted below: now the newest
            self.holes += 1
        else:
            oldest = ts - horizon_ns
            if items and packed_ts(next(iter(items.values()))) < oldest:
                self._prune(oldest)
            if len(items) >= self.cap:
                del items[next(iter(items))]
                self.holes += 1
                evicted = True
        items[key] = value
        if self.holes > COMPACT_MIN and self.holes > len(items) >> 2:
            self.items = dict(items.items())
            self.holes = 0
        return evicted

    def _prune(self, oldest: int) -> None:
        items = self.items
        stale = []
        for k, v in items.items():
            if packed_ts(v) >= oldest:
                break
            stale.append(k)
        for k in stale:
            del items[k]
        self.holes += len(stale)

    def pop(self, key: Any) -> Any:
        value = self.items.pop(key, None)
        if value is not None:
            self.holes += 1
        return value

    def get(self, key: Any, ts: int, horizon_ns: int) -> Any:
        value = self.items.get(key)
        if value is None or abs(ts - packed_ts(value)) > horizon_ns:
            return None
        return value


class Burst:
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
