"""Who can change a path: the check behind the collector's StrictModes and the sinks' log paths.

A file is only as trustworthy as every directory above it: whoever can write a directory can
rename an entry away and put another file, or a symlink, in its place. So a path is *held* by a
set of trusted users when the file itself and every directory from ``/`` down to it is

* owned by a trusted uid,
* not writable by its group, unless the group is trusted,
* not writable by others -- except a directory with the sticky bit (``/tmp``) above an entry
  owned by a trusted uid: there, others may add entries but can neither rename nor remove ours.

Symlinks are checked where they live and where they point (both chains must be held). Pure: the
``lstat`` and ``readlink`` functions are injected, so the rules are unit-tested on made-up trees
(tests/trust/test_paths.py); ``tests/stack/test_privilege_boundaries.py`` checks them on real ones.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import PurePosixPath

__all__ = ["Unsafe", "PathStat", "Lstat", "Readlink", "unsafe_writer", "real_lstat", "describe_uid",
           "describe_gid", "MAX_SYMLINKS"]

MAX_SYMLINKS = 40                  # as the kernel's limit: a loop is reported, not followed forever


@dataclass(frozen=True, slots=True)
class PathStat:
    """What the check needs of ``lstat``."""

    uid: int
    gid: int
    mode: int

    @classmethod
    def of(cls, st: os.stat_result) -> "PathStat":
        return cls(st.st_uid, st.st_gid, st.st_mode)


@dataclass(frozen=True, slots=True)
class Unsafe:
    """``path`` can be changed by someone outside the trusted set; ``who`` says by whom."""

    path: str
    who: str

    def sentence(self, what: str) -> str:
        return f"{what}: {self.path} is {self.who}"


Lstat = Callable[[str], PathStat]
Readlink = Callable[[str], str]


def describe_uid(uid: int) -> str:
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def describe_gid(gid: int) -> str:
    try:
        return f"group {gid} ({grp.getgrgid(gid).gr_name})"
    except KeyError:
        return f"group {gid}"


def real_lstat(path: str) -> PathStat:
    return PathStat.of(os.lstat(path))


def _entry_problem(st: PathStat, child_owner: int | None, uids: Collection[int],
                   gids: Collection[int]) -> str | None:
    """Why one entry (file or directory) is not held, or None. ``child_owner``: the owner of the
    next entry on the way, None when there is none (yet)."""
    if st.uid not in uids:
        return f"owned by {describe_uid(st.uid)}"
    if stat.S_ISLNK(st.mode):
        return None                                  # a link's own mode means nothing
    if st.mode & stat.S_IWGRP and st.gid not in gids:
        return f"writable by {describe_gid(st.gid)}"
    if st.mode & stat.S_IWOTH:
        # Sticky (/tmp): others cannot rename or remove an existing entry they do not own, so the
        # question moves to that entry (reported there if its owner is not trusted).
        if not (stat.S_ISDIR(st.mode) and st.mode & stat.S_ISVTX and child_owner is not None):
            return "writable by every user"
    return None


def _owner(path: str, lstat: Lstat) -> int | None:
    try:
        return lstat(path).uid
    except FileNotFoundError:
        return None


def unsafe_writer(path: str, *, uids: Collection[int] = (0,), gids: Collection[int] = (0,),
                  lstat: Lstat = real_lstat, readlink: Readlink = os.readlink,
                  must_exist: bool = True, _depth: int = 0) -> Unsafe | None:
    """The first entry on the way to ``path`` (an absolute path) that someone outside ``uids`` /
    ``gids`` can change, or None when the whole chain is held.

    With ``must_exist=False`` a missing tail is allowed (a log file not created yet): the check
    then covers the directories that exist, and the file will be created in a held one.
    """
    if _depth > MAX_SYMLINKS:
        return Unsafe(path, "behind too many symbolic links")
    parts = PurePosixPath(path).parts
    if not parts or parts[0] != "/":
        return Unsafe(path, "not an absolute path")
    chain = [str(PurePosixPath(*parts[:i])) for i in range(1, len(parts) + 1)]
    for i, entry in enumerate(chain):
        try:
            st = lstat(entry)
        except FileNotFoundError:
            return Unsafe(entry, "missing") if must_exist else None
        sticky = st.mode & stat.S_ISVTX and st.mode & stat.S_IWOTH
        child_owner = _owner(chain[i + 1], lstat) if sticky and i + 1 < len(chain) else None
        problem = _entry_problem(st, child_owner, uids, gids)
        if problem:
            return Unsafe(entry, problem)
        if stat.S_ISLNK(st.mode):
            target = os.path.normpath(os.path.join(os.path.dirname(entry), readlink(entry)))
            rest = chain[-1][len(entry):]
            return unsafe_writer(target + rest, uids=uids, gids=gids, lstat=lstat,
                                 readlink=readlink, must_exist=must_exist, _depth=_depth + 1)
    return None
