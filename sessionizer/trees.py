"""Agent trees across session boundaries: shards, and the parent of a tree's next session.

A session is a window of time; an attack need not fit in one. A write, an idle gap of 7 s, then
the exec of what was written (issue 11 item 7), or a detached ``sh -c 'sleep 4; ./p'`` left
behind when the invocation ends (item 8): the exec opens a new session of the same tree. So:

* every root gets a ``tree_id`` (allocated from its own sequence, reserved in the state file like
  session ids: never a tgid, which the kernel reuses, and never reused itself);
* every session of a tree names its predecessor in ``parent_session_id``: the session that last
  took an event of the tree (``Root.last_session``), if it is still open or closed no longer
  than ``history_horizon_seconds`` ago. The analyzer carries the tree's history from it;
* a ``shard`` routes sessions to analyzer instances (``shard % N``), so that one instance holds
  all the history a session can need. A runtime root's shard is its own ``tree_id``; an
  invocation root takes the shard of the newest runtime root of its user (its parity window
  absorbs that runtime's events), else its own ``tree_id``; an activity session takes its tree
  root's shard.

:class:`TreeBook` remembers which sessions closed when, within the horizon (bounded).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from sessionizer.tracker import Root

__all__ = ["TreeBook", "invocation_shard", "MAX_CLOSED"]

MAX_CLOSED = 65_536       # closed sessions remembered at most (a parent older than this is lost)


def invocation_shard(roots: Iterable[Root], runtime_profiles: frozenset[str], uid: int | None,
                     own_tree_id: int) -> int:
    """The shard of a new invocation root of ``uid``: that of the newest runtime root of the
    same user, else its own tree id."""
    if not runtime_profiles:
        return own_tree_id
    best: Root | None = None
    for r in roots:
        if r.profile in runtime_profiles and r.uid is not None and r.uid == uid:
            if best is None or r.tree_id > best.tree_id:
                best = r
    return best.shard if best is not None else own_tree_id


class TreeBook:
    """Closing times of recent sessions: which ones can still be a tree's parent session."""

    def __init__(self) -> None:
        self.closed: dict[int, int] = {}                  # session id -> closed_ns
        self._order: deque[tuple[int, int]] = deque()     # (closed_ns, session id), oldest first

    def __len__(self) -> int:
        return len(self.closed)

    def note_closed(self, session_id: int, closed_ns: int | None, now_ns: int,
                    horizon_ns: int) -> None:
        if closed_ns is None:
            return
        self.closed[session_id] = closed_ns
        self._order.append((closed_ns, session_id))
        self.prune(now_ns, horizon_ns)

    def prune(self, now_ns: int, horizon_ns: int) -> None:
        order = self._order
        while order and (order[0][0] < now_ns - horizon_ns or len(order) > MAX_CLOSED):
            closed_ns, sid = order.popleft()
            if self.closed.get(sid) == closed_ns:
                del self.closed[sid]

    def parent_for(self, root: Root, now_ns: int, horizon_ns: int,
                   open_ids: dict[int, Any]) -> int | None:
        """The session the tree's next session continues: its last one, still open or closed
        within the horizon; None when there is none."""
        last = root.last_session
        if last is None:
            return None
        if last in open_ids:
            return last
        closed = self.closed.get(last)
        if closed is not None and now_ns - closed <= horizon_ns:
            return last
        return None

    def to_state(self) -> list[list[int]]:
        return [[sid, ns] for ns, sid in self._order if self.closed.get(sid) == ns]

    @classmethod
    def from_state(cls, raw: Any) -> "TreeBook":
        book = cls()
        for sid, ns in raw or []:
            book.closed[int(sid)] = int(ns)
            book._order.append((int(ns), int(sid)))
        return book
