"""history.* flags kept up to date per event in O(1), equal to ``history_flags()`` at every step.

``history_flags()`` rescans the whole window (the last ``recent_event_limit`` events) on every
event; at 64 events that is ~40% of the analyzer's time. This module keeps, per session, just
enough running state to give the same eight flags without the scan. ``history_flags()`` stays the
definition; tests/analyzer/test_history_window.py checks equality after every event of many random
sequences.

Why it is exact. Number the session's events 0, 1, 2, ... in arrival order; after event ``n`` the
window is ``[start, n]`` with ``start = n - limit + 1``. Each window flag is "some pair (p, j),
p < j, both in the window, with a property fixed when j arrives", and the partner p is the same
event whatever the window is (the latest earlier event of some class, or the (k-1)-th earlier
one). So at j's arrival we know whether the pair is a hit and its p; the hit counts while p is in
the window (then j, later than p, is too). The flag is "the largest p of all hits so far >=
start". A window scan that starts at ``start`` sees the same partner when it lies in the window
and none otherwise, so both definitions agree:

* ``sensitive_then_network`` / ``_execve``: j is a sensitive open (or a connect / exec), p the
  latest earlier event of the other class; hit if their times are within the window seconds.
* ``connect_then_exec``: j an exec, p the latest earlier connect (any time apart).
* ``write_then_exec_same_path``: j an exec of P, p the latest earlier write-intent open of P.
* ``burst_<kind>``: j a kept event of the kind, p the kept event ``threshold - 1`` before it in
  the kind's sequence; hit if ``t_j - t_p <= burst window`` (the scan compares the same pairs).
* ``opened_deleted_path`` is the session's ``deleted_opens`` counter, as before.

A reload that changes the analysis values (classification, thresholds, windows) rebuilds the
state by replaying the window (:meth:`HistoryWindow.replay`), as does a restore from a checkpoint.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from analyzer.history_flags import NS_PER_S, HistoryFlags
from analyzer.session_state import CONNECT, EXEC, OPEN, RecentEvent
from policy import Analysis

__all__ = ["HistoryWindow"]

_NONE = -1          # "no such event": below every window start (seq numbers start at 0)
_NEVER = 2**62      # a window start no session reaches
_BURST_FLAG = {OPEN: 3, CONNECT: 4, EXEC: 5}     # index of burst_<kind> in the flag key


class _Pair:
    """A sensitive open near an ``other`` event (connect or exec), in either order."""

    __slots__ = ("other", "window_ns", "sens_seq", "sens_ts", "other_seq", "other_ts", "hit_p")

    def __init__(self, other: str, window_ns: int) -> None:
        self.other, self.window_ns = other, window_ns
        self.sens_seq = self.other_seq = self.hit_p = _NONE
        self.sens_ts = self.other_ts = 0

    def push_sensitive(self, seq: int, ts: int) -> bool:
        """Fold a sensitive open; True if the latest hit moved."""
        hit = self._pairs_with(self.other_seq, self.other_ts, ts)
        self.sens_seq, self.sens_ts = seq, ts
        return hit

    def push_other(self, seq: int, ts: int) -> bool:
        hit = self._pairs_with(self.sens_seq, self.sens_ts, ts)
        self.other_seq, self.other_ts = seq, ts
        return hit

    def _pairs_with(self, seq: int, seq_ts: int, ts: int) -> bool:
        """The event at ``ts`` pairs with the other side's latest (``seq`` at ``seq_ts``)."""
        w = self.window_ns
        if seq == _NONE or (w > 0 and abs(ts - seq_ts) > w):
            return False
        self.hit_p = seq
        return True


class _Burst:
    """``threshold`` consecutive kept events of one kind within the burst window."""

    __slots__ = ("threshold", "window_ns", "last", "hit_p")

    def __init__(self, threshold: int, window_ns: int) -> None:
        self.threshold, self.window_ns = threshold, window_ns
        self.last: deque[tuple[int, int]] = deque(maxlen=max(threshold - 1, 1))
        self.hit_p = _NONE

    def push(self, seq: int, ts: int) -> bool:
        """Fold a kept event of the kind; True if the latest hit moved."""
        last, hit = self.last, False
        if self.threshold >= 2 and len(last) == self.threshold - 1:
            p_seq, p_ts = last[0]
            if ts - p_ts <= self.window_ns:
                self.hit_p, hit = p_seq, True
        last.append((seq, ts))
        return hit

    def active(self, start: int) -> bool:
        return self.threshold <= 1 or self.hit_p >= start


class HistoryWindow:
    """Running state behind the history flags of one session (see the module docstring)."""

    __slots__ = ("limit", "seq", "to_net", "to_exec", "bursts", "connect_seq", "cte_p",
                 "written", "written_order", "wte_p", "_flags", "_key", "_moved", "_expires",
                 "_always", "_bits")

    def __init__(self, a: Analysis, limit: int) -> None:
        self.limit = limit
        self.seq = _NONE                  # number of the latest event
        sens_ns = a.sensitive_history_window_seconds * NS_PER_S
        self.to_net, self.to_exec = _Pair(CONNECT, sens_ns), _Pair(EXEC, sens_ns)
        window_ns = a.burst_window_seconds * NS_PER_S
        self.bursts = {OPEN: _Burst(a.burst_open_threshold, window_ns),
                       CONNECT: _Burst(a.burst_connect_threshold, window_ns),
                       EXEC: _Burst(a.burst_exec_threshold, window_ns)}
        self.connect_seq = _NONE          # latest connect
        self.cte_p = _NONE                # latest connect before the latest exec
        self.written: dict[str, int] = {}  # path -> latest write-intent open of it, in the window
        self.written_order: deque[tuple[int, str]] = deque()
        self.wte_p = _NONE
        self._flags = HistoryFlags()
        self._key: tuple[bool, ...] = (False,) * 8
        self._bits = 0
        # flags() recomputes only when a hit moved since its last call, or when the window start
        # passed ``_expires`` (the oldest partner of a flag that is true), else nothing changed.
        self._moved = True
        self._expires = _NEVER
        self._always = (False, False, False, a.burst_open_threshold <= 1,
                        a.burst_connect_threshold <= 1, a.burst_exec_threshold <= 1, False)

    @classmethod
    def replay(cls, events: Iterable[RecentEvent], a: Analysis, limit: int) -> "HistoryWindow":
        """The state after ``events`` (a classified window), e.g. after a reload or a restore."""
        window = cls(a, limit)
        for e in events:
            window.push(e)
        return window

    def push(self, e: RecentEvent) -> None:
        """Fold the event that just entered the window (classified, see history_flags.classify).

        A hit that moves for a flag that is already true changes nothing now: it only makes the
        flag last longer, which flags() learns when the window start passes the older partner.
        So only hits of flags that are false mark the state as moved.
        """
        seq = self.seq = self.seq + 1
        kind, ts = e.kind, e.ts_ns
        key = self._key
        moved = False
        if e.sensitive:
            if self.to_net.push_sensitive(seq, ts) and not key[1]:
                moved = True
            if self.to_exec.push_sensitive(seq, ts) and not key[2]:
                moved = True
        elif kind == CONNECT:
            if self.to_net.push_other(seq, ts) and not key[1]:
                moved = True
        elif kind == EXEC:
            if self.to_exec.push_other(seq, ts) and not key[2]:
                moved = True
        if e.burst_kept:
            burst = kind if kind in (OPEN, CONNECT) else EXEC
            if self.bursts[burst].push(seq, ts) and not key[_BURST_FLAG[burst]]:
                moved = True
        if kind == CONNECT:
            self.connect_seq = seq
        elif kind == EXEC:
            if self.cte_p != self.connect_seq:
                self.cte_p = self.connect_seq
                moved = moved or not key[0]
            p = self.written.get(e.path, _NONE) if e.path else _NONE
            if p > self.wte_p:
                self.wte_p = p
                moved = moved or not key[6]
        elif e.write and e.path:
            self.written[e.path] = seq
            self.written_order.append((seq, e.path))
        if moved:
            self._moved = True
        order = self.written_order
        if order and order[0][0] <= seq - self.limit:
            self._forget_written(seq - self.limit + 1)

    def _forget_written(self, start: int) -> None:
        """Drop written paths whose latest write left the window (keeps the map bounded)."""
        order, written = self.written_order, self.written
        while order and order[0][0] < start:
            seq, path = order.popleft()
            if written.get(path) == seq:
                del written[path]

    def flags(self, deleted_opens: int) -> HistoryFlags:
        """The eight flags now; the same object as last time when nothing changed."""
        start = self.seq - self.limit + 1
        if start < 0:
            start = 0
        deleted = deleted_opens > 0
        if not self._moved and start <= self._expires and deleted is self._key[7]:
            return self._flags
        self._moved = False
        b = self.bursts
        partners = (self.cte_p, self.to_net.hit_p, self.to_exec.hit_p, b[OPEN].hit_p,
                    b[CONNECT].hit_p, b[EXEC].hit_p, self.wte_p)
        key = (self.cte_p >= start, self.to_net.hit_p >= start, self.to_exec.hit_p >= start,
               b[OPEN].active(start), b[CONNECT].active(start), b[EXEC].active(start),
               self.wte_p >= start, deleted)
        # A true flag turns false once the start passes its partner; a burst with threshold <= 1
        # is true for good.
        expires = _NEVER
        for p, on, always in zip(partners, key, self._always):
            if on and not always and p < expires:
                expires = p
        self._expires = expires
        if key != self._key:
            self._key = key
            self._flags = HistoryFlags(*key)
            self._bits = sum(1 << i for i, on in enumerate(key) if on)
        return self._flags

    def bits(self, deleted_opens: int) -> int:
        """:meth:`flags` as a bitmask of the eight original fields (history_flags.HISTORY_BIT)."""
        self.flags(deleted_opens)
        return self._bits

