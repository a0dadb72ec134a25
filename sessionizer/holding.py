"""Events of the runtime's own image that no session can take yet (docs/sessionizer.md).

An idle OpenClaw gateway polls, logs and writes its databases all the time; those events must
not open sessions, or an idle gateway would produce an endless chain of them. But the ``write``
tool writes in-process, just before the exec that runs the file, so they cannot simply be
dropped either. Two holds per root:

* **visible**: the root's recent sessionless events, for a lookback of ``idle_gap_s`` and at most
  :data:`HOLD_MAX_EVENTS`. When a turn of the tree opens a session, they join it first, in order.
  Otherwise they age out (counted as ``dropped_runtime_background``);
* **hidden writes**: write-like events (write-intent opens, renames, chmods, truncates, unlinks)
  that aged out of the visible hold, or that a runtime-noise filter hid, kept for the history
  horizon, the latest one per (kind, path), at most :data:`HIDDEN_MAX` per root. They join the
  next session that takes an event of the tree (its own turn, or a CLI window), marked
  ``hidden``: not in the logs, but the analyzer remembers them for write→exec. Without this, a
  ``write`` tool call, a 7 s pause and the exec would lose the write (issue 11 item 7).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

__all__ = ["Held", "Holds", "HOLD_MAX_EVENTS", "HIDDEN_MAX", "BACKGROUND"]

HOLD_MAX_EVENTS = 64        # visible events held per root
HIDDEN_MAX = 1024           # hidden writes held per root (distinct kind and path)
BACKGROUND = "runtime_background"


@dataclass(slots=True)
class Held:
    """One held event and what it will be published with (``extra``: role, hidden, ...);
    ``key`` is its (kind, path) when it is write-like, else None."""

    ts: int
    event: dict[str, Any]
    kind: str
    tgid: int
    ppid: int
    extra: dict[str, Any] | None
    key: Any = None


class Holds:
    """Both holds of every tree (keyed by tree id); see the module docstring. Counts what it drops in
    ``dropped``: ``runtime_background`` (a visible event aged out, not write-like) and
    ``hidden_overflow`` (a hidden write pushed out by the per-root cap)."""

    def __init__(self, dropped: Counter[str] | None = None) -> None:
        self.visible: dict[int, deque[Held]] = {}
        self.hidden: dict[int, dict[Any, Held]] = {}
        self.dropped: Counter[str] = dropped if dropped is not None else Counter()

    def __bool__(self) -> bool:
        return bool(self.visible or self.hidden)

    def hold(self, root: int, item: Held, lookback_ns: int, horizon_ns: int) -> None:
        """Keep a visible event; what falls out of the lookback or the cap is aged."""
        held = self.visible.setdefault(root, deque())
        held.append(item)
        self._age(root, held, item.ts - lookback_ns, horizon_ns, item.ts)
        while len(held) > HOLD_MAX_EVENTS:
            self._retire(root, held.popleft(), horizon_ns, item.ts)

    def hold_hidden(self, root: int, item: Held, horizon_ns: int) -> None:
        """Keep a write that a filter hid (the latest per kind and path)."""
        table = self.hidden.setdefault(root, {})
        table.pop(item.key, None)
        table[item.key] = item
        self._prune_hidden(table, item.ts - horizon_ns)

    def take(self, root: int, now: int, lookback_ns: int, horizon_ns: int,
             visible: bool) -> list[Held]:
        """What joins a session of the tree now, oldest first: the hidden writes within the
        horizon, and (``visible``: the tree's own new turn) the lookback events; otherwise
        (a CLI window) the lookback's writes join too, hidden, and the rest stays held."""
        held = self.visible.pop(root, None)
        if held:
            self._age(root, held, now - lookback_ns, horizon_ns, now)
        if held and not visible:
            for item in [h for h in held if h.key is not None]:
                held.remove(item)
                item.extra = {**(item.extra or {}), "hidden": BACKGROUND}
                self.hold_hidden(root, item, horizon_ns)
            if held:
                self.visible[root] = held
            held = None
        table = self.hidden.pop(root, None)
        out: list[Held] = []
        if table:                           # insertion order is nearly, not exactly, time order
            out += [h for h in table.values() if h.ts >= now - horizon_ns]
        if held:
            out += held
        out.sort(key=lambda h: h.ts)
        return out

    def forget(self, root: int) -> None:
        self.visible.pop(root, None)
        self.hidden.pop(root, None)

    def _age(self, root: int, held: deque[Held], oldest: int, horizon_ns: int, now: int) -> None:
        while held and held[0].ts < oldest:
            self._retire(root, held.popleft(), horizon_ns, now)

    def _retire(self, root: int, item: Held, horizon_ns: int, now: int) -> None:
        """A visible event leaves the lookback: a write is kept hidden, the rest is dropped."""
        if item.key is None or item.ts < now - horizon_ns:
            self.dropped[BACKGROUND] += 1
            return
        item.extra = {**(item.extra or {}), "hidden": BACKGROUND}
        self.hold_hidden(root, item, horizon_ns)

    def _prune_hidden(self, table: dict[Any, Held], oldest: int) -> None:
        while table:
            first = next(iter(table))
            if table[first].ts >= oldest and len(table) <= HIDDEN_MAX:
                return
            if table[first].ts >= oldest:
                self.dropped["hidden_overflow"] += 1
            del table[first]
