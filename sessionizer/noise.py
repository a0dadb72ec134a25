"""Path noise on the absolute, normalised path: loader noise (any process) and runtime noise
(role ``agent`` only, anchored to the root's real directories). See gates.py for the lists.

Every path check reads the path through ``bus.paths``' convention: ``abspath`` when the
collector resolved a relative path, else ``path``. A path that stays relative (the kernel could
not resolve its base, or an event from a collector without ``abspath``) is never noise: it is
kept and counted (``unresolved_paths``), because no anchored filter can vouch for it.

What one path is, apart from who opened it, is remembered per distinct path text
(:class:`PathFacts`, 4,096 paths, then it starts over): an agent opens the same files again and
again. The answer is ``None`` (nothing known), a reason (``missing_fields``, ``loader_noise``,
``unresolved``), or an ``int``: the pid of a ``/proc/<pid>/...`` path, which is loader noise only
when it is the opener's own pid (the core decides, per event). A ``/proc/<other pid>`` open is
never noise: it is annotated with ``target_tgid`` and ``target_in_tree`` instead.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from bus.paths import normalise
from bus.text import from_wire
from sessionizer.gates import NoiseLists

__all__ = ["MISSING", "LOADER", "UNRESOLVED", "RUNTIME", "WRITE_FLAGS", "PathFacts", "path_fact", "NOT_KNOWN",
           "RuntimeAnchors", "runtime_anchors", "write_intent", "path_key", "PATH_MEMO_SIZE"]

MISSING, LOADER, UNRESOLVED, RUNTIME = "missing_fields", "loader_noise", "unresolved", "runtime_noise"
# O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND (x86-64 and arm64 values)
WRITE_FLAGS = 0o1 | 0o2 | 0o100 | 0o1000 | 0o2000
PATH_MEMO_SIZE = 4096    # distinct paths remembered; a hit costs ~0.1 us, a miss ~1 us
GCONV_CACHE = "gconv-modules.cache"

Fact = str | int | None
NOT_KNOWN: Any = object()      # not in PathFacts.memo (a fact may be None)


def write_intent(flags: Any) -> bool:
    """An open that may change the file: write access mode, or O_CREAT/O_TRUNC/O_APPEND."""
    return type(flags) is int and bool(flags & WRITE_FLAGS)


def path_key(event: dict[str, Any], key: str = "path") -> Any:
    """The wire text to judge for ``key``: the kernel's ``abspath`` when it has one, else the
    raw path (``""`` abspath: unresolved, the raw path as given)."""
    abs_value = event.get("abspath" if key == "path" else "new_abspath")
    return abs_value if abs_value else event.get(key)


def _proc_fact(path: str) -> Fact:
    """``/proc`` paths: a pid directory gives the pid; ``self``, ``thread-self``, ``/proc``
    itself and non-pid files (``/proc/meminfo``) are loader noise."""
    if path == "/proc":
        return LOADER
    first = path[6:].split("/", 1)[0]
    if first.isascii() and first.isdigit():
        return int(first)
    return LOADER


def path_fact(raw: Any, lists: NoiseLists, library_dirs: tuple[str, ...]) -> Fact:
    """What a path is for the loader-noise filter, independent of who opened it."""
    if type(raw) is not str:
        raw = from_wire(raw) if isinstance(raw, bytes) else ""
    if not raw:
        return MISSING
    if raw[0] != "/":
        return UNRESOLVED
    path = normalise(raw) if ("//" in raw or "/." in raw or raw[-1] == "/") else raw
    if path == "/proc" or path.startswith("/proc/"):
        return _proc_fact(path)
    if path in lists.loader_exact or path.startswith(lists.loader_prefixes):
        return LOADER
    if library_dirs and path.startswith(library_dirs):
        name = posixpath.basename(path)
        if ".so" in name or name == GCONV_CACHE:
            return LOADER
    return None


class PathFacts:
    """:func:`path_fact` for one :class:`NoiseLists`, remembered per distinct path text.

    Bounded: when full it starts over. Settings builds one per configuration, so a reload that
    changes the lists gets a fresh, empty one and can never be answered from the old lists.
    ``memo`` (str or bytes path -> fact) is public so that the core's per-open path reads a hit
    without a call (``memo.get(raw, NOT_KNOWN)`` for a ``str``, else :meth:`fact`).
    """

    __slots__ = ("lists", "library_dirs", "size", "memo")

    def __init__(self, lists: NoiseLists, library_dirs: tuple[str, ...],
                 size: int = PATH_MEMO_SIZE) -> None:
        self.lists = lists
        self.library_dirs = tuple(d.rstrip("/") + "/" for d in library_dirs)
        self.size = size
        self.memo: dict[str | bytes, Fact] = {}

    def __len__(self) -> int:
        return len(self.memo)

    def fact(self, raw: Any) -> Fact:
        kind = type(raw)
        if kind is not str and kind is not bytes:       # not hashable text: no memo
            return path_fact(raw, self.lists, self.library_dirs)
        memo = self.memo
        try:
            return memo[raw]
        except KeyError:
            pass
        fact = path_fact(raw, self.lists, self.library_dirs)
        if len(memo) >= self.size:
            memo.clear()
        memo[raw] = fact
        return fact


@dataclass(frozen=True, slots=True)
class RuntimeAnchors:
    """The runtime-noise places of one root: its state (directory prefixes, each ending in
    ``/``, and name prefixes) and what it only reads (its user's rc files, package manifests).
    Matched on the absolute, normalised path.

    A write is runtime noise (hidden) only in the runtime's state: an rc file or a manifest
    written by the runtime's own image is published plainly, because the in-process ``write``
    tool can persist through ``~/.bashrc`` and the analyzer must see that."""

    dirs: tuple[str, ...] = ()
    files: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    names: tuple[str, ...] = ()

    def matches(self, path: str) -> bool:
        """A read of ``path`` by the runtime's own image is noise."""
        if path.startswith(self.dirs) or path.startswith(self.prefixes):
            return True
        return path in self.files or path.endswith(self.names)

    def state(self, path: str) -> bool:
        """A write of ``path`` by the runtime's own image is its own state (hidden)."""
        return path.startswith(self.dirs) or path.startswith(self.prefixes)


def _dir_prefix(path: str) -> str | None:
    """An absolute directory as a prefix ending in ``/``; None for ``/`` or a relative one."""
    d = posixpath.normpath(path) if path else ""
    if not d.startswith("/") or d == "/":
        return None
    return d.rstrip("/") + "/"


def runtime_anchors(lists: NoiseLists, uid: int | None, home: str | None,
                    install_dir: str | None) -> RuntimeAnchors:
    """The anchored runtime-noise places for a root of ``uid`` whose user's real home is
    ``home`` (passwd; None: unknown, no home entries) and whose install directory is
    ``install_dir`` (roles.install_dir; None: unknown)."""
    dirs: list[str] = []
    files: set[str] = set()
    home_dir = _dir_prefix(home or "")
    if home_dir is not None:
        dirs += [p for p in (_dir_prefix(home_dir + d) for d in lists.runtime_home_dirs) if p]
        files |= {posixpath.normpath(home_dir + f) for f in lists.runtime_home_files}
    install = _dir_prefix(install_dir or "")
    if install is not None:
        dirs.append(install)
    for d in lists.runtime_dirs:
        if "{uid}" in d:
            if uid is None:
                continue                         # no uid known: a templated entry matches nothing
            d = d.replace("{uid}", str(uid))
        prefix = _dir_prefix(d)
        if prefix is not None:
            dirs.append(prefix)
    return RuntimeAnchors(dirs=tuple(dict.fromkeys(dirs)), files=frozenset(files),
                          prefixes=tuple(p for p in lists.runtime_prefixes if p.startswith("/")),
                          names=tuple("/" + n.strip("/") for n in lists.runtime_names if n.strip("/")))
