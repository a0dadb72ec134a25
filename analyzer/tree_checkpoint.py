"""Per-tree history in the analyzer checkpoint (analyzer/checkpoint.py).

A tree's indices outlive its sessions (a later session of the tree needs them), so they are
saved beside the sessions and restored with them: written paths (by their stable key, and the
last few by text) and identities, process images, pending scripts, the schema-2 signal indices,
the latest connect / exec / sensitive open / credential read / listen, the overflow mark. Burst
counters and UDP byte counts are not saved: they span seconds to a minute, about what a restart
takes.

Rows written before written paths were keyed by hash (``"written"`` keyed by path text, identity
values ``[packed, path]``) are converted on load.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from analyzer.tree_history import TreeHistory, TreeStore
from analyzer.tree_index import Index, path_key

__all__ = ["dump_tree", "load_trees"]

_LATEST = ("last_connect", "last_exec", "last_sensitive", "last_credential")


def _ref(raw: Any) -> tuple[int, int, str, str]:
    return (int(raw[0]), int(raw[1]), str(raw[2]), str(raw[3]))


def _rows(index: Index) -> list[list[Any]]:
    return [[k, list(v) if isinstance(v, tuple) else v] for k, v in index.items.items()]


def dump_tree(key: int, tree: TreeHistory) -> dict[str, Any]:
    sig = tree.sig
    return {
        "key": key, "v": 2, "route": tree.route, "last_ns": tree.last_ns,
        "overflowed": list(tree.overflowed) if tree.overflowed else None,
        "written": _rows(tree.written), "written_ids": _rows(tree.written_ids),
        "names": [[k, v] for k, v in tree.names.items()],
        "procs": _rows(tree.procs), "scripts": _rows(tree.scripts),
        "readers": _rows(sig.readers) if sig else [], "lib_dirs": _rows(sig.lib_dirs) if sig else [],
        "last_listen": list(sig.last_listen) if sig and sig.last_listen else None,
        "latest": {name: list(ref) if (ref := getattr(tree, name)) is not None else None
                   for name in _LATEST},
    }


def _fill(index: Index, rows: list[Any], key: Callable[[Any], Any], value: Callable[[Any], Any]) -> None:
    for k, v in rows:
        index.items[key(k)] = value(v)


def _written_key(k: Any) -> int:
    return path_key(k) if isinstance(k, str) else int(k)


def _image(v: list[Any], old: bool) -> tuple[Any, ...]:
    """A process image; rows from before image flags held the pid in the low bits: cleared."""
    packed = int(v[0]) & ~((1 << 25) - 1) if old else int(v[0])
    return (packed, str(v[1])) if len(v) < 3 else (packed, str(v[1]), int(v[2]))


def load_tree(raw: dict[str, Any], store: TreeStore) -> tuple[int, TreeHistory]:
    key = int(raw["key"])
    tree = TreeHistory(store.c, store.classes, store.stats)
    tree.route, tree.last_ns = int(raw.get("route", 0)), int(raw.get("last_ns", 0))
    overflowed = raw.get("overflowed")
    tree.overflowed = _ref(overflowed) if isinstance(overflowed, list) else None
    _fill(tree.written, raw.get("written", []), _written_key, int)
    tree.names.update((int(k), str(v)) for k, v in raw.get("names", []))
    tree.names.update((path_key(k), k) for k, _ in raw.get("written", []) if isinstance(k, str))
    _fill(tree.written_ids, raw.get("written_ids", []), int, lambda v: int(v[0] if isinstance(v, list) else v))
    old = raw.get("v") != 2
    _fill(tree.procs, raw.get("procs", []), int, lambda v: _image(v, old))
    _fill(tree.scripts, raw.get("scripts", []), int,
          lambda v: (int(v[0]), str(v[1]), str(v[2]), None if v[3] is None else str(v[3])))
    if raw.get("readers") or raw.get("lib_dirs") or raw.get("last_listen"):
        sig = tree.signals()
        _fill(sig.readers, raw.get("readers", []), int, lambda v: (int(v[0]), str(v[1])))
        _fill(sig.lib_dirs, raw.get("lib_dirs", []), int, int)
        if isinstance(raw.get("last_listen"), list):
            sig.last_listen = _ref(raw["last_listen"])
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
