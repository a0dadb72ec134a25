"""Which path an event is about: the one place every stage turns an event's path into the
absolute, normalised path that filters, flags and matches compare.

The collector publishes ``path`` exactly as the caller passed it, and ``abspath`` when the
absolute, lexically normalised path differs from it (docs/bus.md §5.9):

* ``abspath`` absent: ``path`` already is absolute and normal;
* ``abspath`` text: the path resolved in the kernel against the process's cwd (or the dirfd's
  directory, or the fd's own file) and normalised (``.``, ``..`` and ``//`` folded);
* ``abspath == ""``: ``path`` is relative and its base could not be resolved; callers then use
  ``path`` as given and say so (``resolved`` is False).

Normalisation is lexical, like the kernel's own walk of ``..`` from the resolved base: a ``..``
after a symlink component is folded textually (documented caveat).
"""

from __future__ import annotations

import posixpath
from typing import Any

from bus.text import from_wire

__all__ = ["effective_path", "normalise", "is_normal_absolute"]


def is_normal_absolute(path: str) -> bool:
    """True when ``path`` is absolute and already normal (the common case, tested cheaply)."""
    if path[:1] != "/" or "//" in path or "/./" in path or "/../" in path:
        return False
    return not (path.endswith("/.") or path.endswith("/..") or (len(path) > 1 and path[-1] == "/"))


def normalise(path: str, base: str = "/") -> str:
    """``path`` made absolute against ``base`` and folded lexically; ``//x`` becomes ``/x``.

    ``posixpath.normpath`` keeps a leading ``//`` (POSIX allows it to be special); Linux does
    not treat it specially, so it is folded here too.
    """
    if is_normal_absolute(path):
        return path
    joined = path if path.startswith("/") else posixpath.join(base or "/", path)
    out = posixpath.normpath(joined)
    if out.startswith("//"):
        out = "/" + out.lstrip("/")
    return out


def effective_path(event: dict[str, Any], key: str = "path") -> tuple[str, bool]:
    """``(path, resolved)`` for an event's ``key`` (``path`` or ``new_path``).

    ``resolved`` is False only when the path is relative and the kernel could not resolve its
    base: the caller then compares the raw text (and should count it). Wire text (str or bytes)
    is accepted; the result is a stage-side ``str``.
    """
    abs_key = "abspath" if key == "path" else f"new_abs{key[4:]}" if key.startswith("new_") else f"abs{key}"
    raw = event.get(key, "")
    raw = from_wire(raw) if isinstance(raw, (str, bytes)) else ""
    if abs_key in event:
        value = event[abs_key]
        value = from_wire(value) if isinstance(value, (str, bytes)) else ""
        if value:
            return value, True
        return raw, raw.startswith("/")
    if raw.startswith("/"):
        return normalise(raw), True
    return raw, not raw
