"""What the analyzer keeps per owned session, its counters, and the closed-session memory."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from analyzer.context import Context
from analyzer.decisions import DecisionState
from analyzer.history_window import HistoryWindow
from analyzer.session_state import SessionState
from analyzer.tree_history import SessionMarks, TreeHistory

__all__ = ["Counters", "ClosedIds", "Tracked"]


@dataclass(slots=True)
class Counters:
    events_in: int = 0
    events_owned: int = 0
    events_malformed: int = 0
    events_late: int = 0          # for a session this instance already saw closed
    events_ignored: int = 0       # original mode: role execs/exits and hidden events, as if dropped
    evaluations_skipped: int = 0  # context unchanged since the last evaluation
    decisions: int = 0
    lifecycle_in: int = 0
    reloads_applied: int = 0
    reloads_rejected: int = 0
    last_reload_id: int = 0
    control_unknown: int = 0      # control maps with a command this build does not know (forwarded)
    loss_marks: int = 0
    unresolved_paths: int = 0     # relative paths the kernel could not resolve (compared as given)
    trees_expired: int = 0        # per-tree histories dropped after the horizon without events

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


class ClosedIds:
    """The last ``limit`` closed session ids, oldest first, with O(1) membership.

    Every event asks "is its session already closed?"; a plain deque answered that by scanning
    up to 4,096 ids per event.
    """

    __slots__ = ("_order", "_members")

    def __init__(self, limit: int) -> None:
        self._order: deque[int] = deque(maxlen=limit)
        self._members: dict[int, int] = {}        # id -> how many times it is in _order

    def __contains__(self, sid: object) -> bool:
        return sid in self._members

    def __iter__(self) -> Iterator[int]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)

    def append(self, sid: int) -> None:
        order, members = self._order, self._members
        if order.maxlen is not None and len(order) == order.maxlen:
            old = order[0]
            if members[old] == 1:
                del members[old]
            else:
                members[old] -= 1
        order.append(sid)
        members[sid] = members.get(sid, 0) + 1

    def extend(self, sids: Iterable[int]) -> None:
        for sid in sids:
            self.append(sid)


@dataclass(slots=True)
class Tracked:
    """One owned session: folded state, derived context, decision state, history marks."""

    state: SessionState
    ctx: Context = field(default_factory=Context)
    decision: DecisionState = field(default_factory=DecisionState)
    last_key: tuple[Any, ...] | None = None     # (context rule key, rules version) last evaluated
    last_message_ns: int = 0
    restored: bool = False        # from a checkpoint and not yet mentioned by the sessionizer
    # original mode: the running window state; None means "rebuild from the window"
    history: HistoryWindow | None = None
    last_ctx: Context | None = None               # the context last_key was computed from
    marks: SessionMarks = field(default_factory=SessionMarks)   # sticky history bits, evidence
    trees: dict[int, TreeHistory] = field(default_factory=dict)  # tree key -> its history
    shard: int | None = None      # routing key (sessionizer ``shard``), None: session_id
    hbits: int = 0                # ctx.history as a bitmask (history_flags.HISTORY_BIT)
    xbits: int = 0                # marks.xbits already merged into ctx (tree_index.X_BIT)
