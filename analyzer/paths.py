"""Path predicates of docs/original.md §8.2, on raw syscall strings (trimmed only, no realpath).

Matching is exact and case-sensitive: ``/TMP/x`` is not suspicious, ``/tmp/../etc/shadow`` is
sensitive only through its literal text. This is the original's behaviour, kept on purpose.
"""

from __future__ import annotations

from collections.abc import Iterable

from analyzer.session_state import DELETED_MARK

__all__ = ["is_sensitive", "is_suspicious", "is_memfd_or_deleted", "has_write_intent",
           "DELETED_MARK", "MEMFD_PREFIX"]

MEMFD_PREFIX = "memfd:"        # the dentry name of a memfd_create file

O_ACCMODE, O_WRONLY, O_RDWR = 3, 1, 2
O_CREAT, O_TRUNC, O_APPEND = 0x40, 0x200, 0x400


def is_sensitive(path: str, prefixes: Iterable[str], patterns: Iterable[str]) -> bool:
    """Starts with a sensitive prefix, or contains a sensitive pattern."""
    if not path:
        return False
    return any(path.startswith(p) for p in prefixes) or any(p in path for p in patterns)


def is_memfd_or_deleted(path: str) -> bool:
    return bool(path) and (path.startswith(MEMFD_PREFIX) or DELETED_MARK in path)


def is_suspicious(path: str, patterns: Iterable[str]) -> bool:
    """Contains a suspicious pattern, or is a memfd / deleted file."""
    if not path:
        return False
    return any(p in path for p in patterns) or is_memfd_or_deleted(path)


def has_write_intent(flags: int) -> bool:
    """O_WRONLY/O_RDWR access mode, or O_CREAT/O_TRUNC/O_APPEND (x86-64/arm64 values)."""
    return (flags & O_ACCMODE) in (O_WRONLY, O_RDWR) or bool(flags & (O_CREAT | O_TRUNC | O_APPEND))
