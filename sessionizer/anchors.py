"""Root-owned system directories: the only places where a name may stand for a program.

Name shortcuts (routine execs, the runtime's shell wrapper, "is there a shell above this
process") and the loader-noise library directories are honoured only for files in directories
that no unprivileged user can write. Otherwise an agent could write ``/tmp/d/id`` or
``/tmp/d/sh`` and have it pass as ``id`` or as the runtime's wrapper (issue 11 items 3, 4).

A configured directory is kept only when it, and every directory above it, is owned by root and
is neither group- nor world-writable (like sshd's StrictModes): whoever can write a directory or
one above it can replace what it holds. ``os.stat`` follows symlinks, so ``/bin -> usr/bin`` is
judged by ``/usr/bin``. A directory that fails (or does not exist) is dropped with a warning;
that only makes CASA see more, never less. The check runs when the settings are loaded (start,
reload), not per event; ``stat`` is injectable for tests.

Membership is exact: a file is *in* a system directory when its normalised absolute path's
parent directory is one of them (``/usr/bin/id``, not ``/usr/bin/x/id``): subdirectories are
not vouched for.
"""

from __future__ import annotations

import logging
import os
import posixpath
import stat as st
from collections.abc import Callable, Iterable

__all__ = ["StatFn", "trusted_dirs", "in_dirs", "under_dirs"]

StatFn = Callable[[str], os.stat_result]

log = logging.getLogger("casa.sessionizer")


def _why_untrusted(path: str, stat: StatFn) -> str | None:
    """None when ``path`` and every directory above it are root-owned and not group/world
    writable; else the reason, naming the offending directory."""
    current = path
    while True:
        try:
            info = stat(current)
        except OSError as exc:
            return f"cannot stat {current}: {exc.strerror or exc}"
        if not st.S_ISDIR(info.st_mode):
            return f"{current} is not a directory"
        if info.st_uid != 0:
            return f"{current} is owned by uid {info.st_uid}, not root"
        if info.st_mode & (st.S_IWGRP | st.S_IWOTH):
            return f"{current} is group- or world-writable (mode {info.st_mode & 0o7777:o})"
        if current == "/":
            return None
        current = posixpath.dirname(current)


def trusted_dirs(dirs: Iterable[str], what: str, stat: StatFn = os.stat) -> tuple[str, ...]:
    """The normalised absolute directories of ``dirs`` that pass the ownership check, in order;
    each one dropped is logged with the reason."""
    out: list[str] = []
    for raw in dirs:
        d = posixpath.normpath(raw.strip()) if raw.strip() else ""
        if not d.startswith("/"):
            log.warning("%s entry is not an absolute directory; dropped | dir=%r", what, raw)
            continue
        if d.startswith("//"):
            d = "/" + d.lstrip("/")
        why = _why_untrusted(d, stat)
        if why is not None:
            log.warning("%s entry is not a root-owned, non-writable directory; dropped "
                        "(names in it are not shortcuts) | dir=%s reason=%s", what, d, why)
            continue
        if d not in out:
            out.append(d)
    return tuple(out)


def in_dirs(path: str, dirs: frozenset[str]) -> bool:
    """Is ``path`` (absolute, normalised) a file directly in one of ``dirs``?"""
    i = path.rfind("/")
    if i < 0:
        return False
    return (path[:i] or "/") in dirs


def under_dirs(path: str, prefixes: tuple[str, ...]) -> bool:
    """Is ``path`` below one of ``prefixes`` (each ending in ``/``), at any depth?"""
    return path.startswith(prefixes)
