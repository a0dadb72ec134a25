"""Made-up file trees for the pure trust checks: ``lstat`` and ``readlink`` over a dict, so the
rules are tested without root and without touching the real file system."""

from __future__ import annotations

import stat
from collections.abc import Callable

from trust.paths import PathStat

__all__ = ["DIR", "FILE", "LINK", "CASA_GID", "ROOT_TREE", "tree"]

DIR, FILE, LINK = stat.S_IFDIR, stat.S_IFREG, stat.S_IFLNK
CASA_GID = 54321            # a group that does not exist here: messages show the number only


def tree(entries: dict[str, tuple[int, int, int]],
         links: dict[str, str] | None = None) -> tuple[Callable[[str], PathStat], Callable[[str], str]]:
    """Injected lstat/readlink over ``{path: (uid, gid, mode)}``."""
    def lstat(p: str) -> PathStat:
        if p not in entries:
            raise FileNotFoundError(p)
        return PathStat(*entries[p])
    return lstat, (links or {}).__getitem__


ROOT_TREE = {"/": (0, 0, DIR | 0o755), "/opt": (0, 0, DIR | 0o755), "/opt/casa": (0, 0, DIR | 0o755),
             "/opt/casa/rules.json": (0, 0, FILE | 0o644), "/tmp": (0, 0, DIR | 0o1777)}
