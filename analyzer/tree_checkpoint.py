"""Per-tree history in the analyzer checkpoint (analyzer/checkpoint.py).

A tree's indices outlive its sessions (a later session of the tree needs them), so they are
saved beside the sessions and restored with them: written paths and identities, process images,
pending scripts, the latest connect / exec / sensitive open / credential read, the overflow mark.
Burst counters are not saved: they span seconds, less than a restart takes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from analyzer.tree_history import TreeHistory, TreeStore, _Index

__all__ = ["dump_tree", "load_trees"]

_LATEST = ("last_connect", "last_exec", "last_sensitive", "last_credential")


def _ref(raw: Any) -> tuple[int, int, str, str]:
    return (int(raw[0]), int(raw[1]), str(raw[2]), str(raw[3]))


def dump_tree(key: int, tree: TreeHistory) -> dict[str, Any]:
    return {
        "key": key, "route": tree.route, "last_ns": tree.last_ns,
        "overflowed": list(tree.overflowed) if tree.overflowed else None,
        "written": [[k, v] for k, v in tree.written.items.items()],
        "written_ids": [[k, list(v)] for k, v in tree.written_ids.items.items()],
        "procs": [[k, list(v)] for k, v in tree.procs.items.items()],
        "scripts": [[k, list(v)] for k, v in tree.scripts.items.items()],
        "latest": {name: list(ref) if (ref := getattr(tree, name)) is not None else None
                   for name in _LATEST},
    }


def _fill(index: _Index, rows: list[Any], key: Callable[[Any], Any], value: Callable[[Any], Any]) -> None:
    for k, v in rows:
        index.items[key(k)] = value(v)


def load_tree(raw: dict[str, Any], store: TreeStore) -> tuple[int, TreeHistory]:
    key = int(raw["key"])
    tree = TreeHistory(store.c, store.classes, store.stats)
    tree.route, tree.last_ns = int(raw.get("route", 0)), int(raw.get("last_ns", 0))
    overflowed = raw.get("overflowed")
    tree.overflowed = _ref(overflowed) if isinstance(overflowed, list) else None
    _fill(tree.written, raw.get("written", []), str, int)
    _fill(tree.written_ids, raw.get("written_ids", []), int, lambda v: (int(v[0]), str(v[1])))
    _fill(tree.procs, raw.get("procs", []), int, lambda v: (int(v[0]), str(v[1])))
    _fill(tree.scripts, raw.get("scripts", []), int,
          lambda v: (int(v[0]), str(v[1]), str(v[2]), None if v[3] is None else str(v[3])))
    for name, ref in (raw.get("latest") or {}).items():
        if name in _LATEST and ref is not None:
            setattr(tree, name, _ref(ref))
    return key, tree


def load_trees(rows: list[Any], store: TreeStore, owned: Callable[[int], bool],
               warn: Callable[[Exception], None]) -> int:
    """Restore the trees this instance owns (``owned(route)``); return how many."""
    n = 0
    for raw in rows:
        try:
            key, tree = load_tree(raw, store)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            warn(exc)
            continue
        if owned(tree.route):
            store.trees[key] = tree
            n += 1
    return n
