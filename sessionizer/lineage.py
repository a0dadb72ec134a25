"""Lineage of an exec: the chain of tracked processes from the exec'ing process up to its root.

As in the original's final ``BuildLineage`` (docs/original.md §4): walk the tracker cache only
(no /proc), from the process to its tracked parent, at most ``max_depth + 1`` steps; stop at an
untracked pid or after the root (the root is included, last); transparent entries (runtime shell
wrappers, routine execs) are walked through but not emitted. Nodes are
``{"tgid", "ppid", "comm"}`` with ``comm`` the post-exec name (basename of the exec path), so the
analyzer's ``shell_in_chain`` & co. read what actually ran, not the pre-exec task comm.
"""

from __future__ import annotations

from typing import Any

from sessionizer.tracker import Tracker

__all__ = ["build_lineage"]


def build_lineage(tracker: Tracker, tgid: int, max_depth: int) -> list[dict[str, Any]]:
    """Nodes from ``tgid`` up to its root (inclusive), transparent ones skipped."""
    nodes: list[dict[str, Any]] = []
    proc = tracker.get(tgid)
    for _ in range(max(max_depth, 0) + 1):
        if proc is None:
            break
        if not proc.transparent:
            nodes.append({"tgid": proc.tgid, "ppid": proc.ppid, "comm": proc.comm})
        if proc.is_root:
            break
        proc = tracker.get(proc.ppid)
    return nodes
