"""What a path is, for every flag at once: one cached bitmask per (uid, absolute path).

The flags ask many questions of the same path (sensitive? routine for bursts? a credential store
of this user? a persistence location? a log? does it name a security tool? a hidden component?
inside a root-owned system directory?). An agent opens the same files over and over, so
:class:`PathClasses` answers all of them once per distinct path and remembers the bitmask
(bounded: cleared when full, like the original's Classifier cache).

Patterns (``credential_paths``, ``persistence_paths``, ``log_paths``, ``credential_consumers``)
are globs: ``*`` and ``?`` stay inside one path component, ``**`` crosses components (``**/``
also matches nothing, so ``**/.env`` matches ``/.env``). In the three path lists a pattern
starting with ``!`` is an exclusion: a path it matches is not in the class (``!~/.ssh/*.pub``:
public keys are not credentials). A ``credential_consumers`` reader is an executable basename,
honoured inside ``system_dirs`` only, or an absolute path, matched exactly against the reader's
resolved executable (``/home/u/.nvm/versions/node/v22.1.0/bin/node``). ``~/`` is the home directory of the
process's own uid, from passwd; for uid 0, which can read every home, it is also every other
passwd home (``/`` excluded). A uid without a passwd entry matches no ``~/`` pattern. Paths are
compared as the absolute, normalised text ``bus.paths.effective_path`` gives (case-sensitive).

``system_dirs``: a listed directory that does not exist, is not owned by root or is group- or
world-writable is dropped with a warning (a name shortcut inside it could be planted).
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import stat
from collections.abc import Iterable

from analyzer.paths import is_memfd_or_deleted
from bus.paths import normalise
from analyzer.session_state import DELETED_MARK
from policy import Analysis

__all__ = ["PathClasses", "glob_regex", "compile_globs", "home_dirs", "trusted_system_dirs", "interpreter_ids",
           "SENSITIVE", "BURST_KEPT", "SUSPICIOUS", "MEMFD_DELETED", "DELETED", "CREDENTIAL",
           "PERSISTENCE", "LOG", "SECURITY_TOOL", "HIDDEN", "SYSTEM", "FOREIGN_PROC", "tokens",
           "burst_ignorable_open", "PROCESS_LISTERS", "proc_target"]

log = logging.getLogger("casa.analyzer")

SENSITIVE = 1 << 0        # the original's sensitive_path_prefixes / _patterns
BURST_KEPT = 1 << 1       # an open that counts towards burst_open (not loader/routine noise)
SUSPICIOUS = 1 << 2       # suspicious_path_patterns, memfd:, " (deleted)"
MEMFD_DELETED = 1 << 3    # memfd: or " (deleted)"
DELETED = 1 << 4          # " (deleted)" (opened_deleted_path)
CREDENTIAL = 1 << 5       # credential_paths (uid-dependent)
PERSISTENCE = 1 << 6      # persistence_paths (uid-dependent)
LOG = 1 << 7              # log_paths (uid-dependent)
SECURITY_TOOL = 1 << 8    # a path component names a security tool
HIDDEN = 1 << 9           # a component starts with "."
SYSTEM = 1 << 10          # inside a trusted system directory
FOREIGN_PROC = 1 << 11    # /proc/<pid>/{mem,environ,maps} (also under task/<tid>/): another process's

_PROC_MEMORY = re.compile(r"/proc/(\d+)(?:/task/\d+)?/(mem|environ|maps)")
# System process listers read every process's environ (``ps e``) or maps (``lsof``) as routine:
# such reads (never of mem) by these names, run from inside system_dirs, are not foreign reads.
PROCESS_LISTERS = frozenset({"ps", "top", "htop", "atop", "pgrep", "pkill", "pidof", "pstree",
                             "w", "lsof", "procs", "btop"})

_TOKEN_SPLIT = re.compile(r"[^A-Za-z0-9_-]+")

_ROUTINE_OPEN_EXACT = frozenset({"/dev/null", "/dev/tty", "/dev/urandom", "/etc/localtime",
                                 "/usr/lib/locale/locale-archive", "package.json",
                                 "package-lock.json", "/etc/ld.so.cache", ""})
# The original lists /home/ubuntu/.profile and .bashrc; any home's dotfile is routine here.
_ROUTINE_OPEN_SUFFIXES = ("/package.json", "/package-lock.json", "/.profile", "/.bashrc")
_ROUTINE_OPEN_PARTS = ("/.nvm/", "/.openclaw/")
_LIB_DIRS = ("/lib/", "/usr/lib/", "/lib64/")


def burst_ignorable_open(path: str) -> bool:
    """Loader, runtime and routine-file opens that never count towards a burst."""
    if path in _ROUTINE_OPEN_EXACT:
        return True
    if path.startswith(_LIB_DIRS) and ".so" in path:
        return True
    if path in ("/proc", "/sys") or path.startswith(("/proc/", "/sys/")):
        return True
    return path.endswith(_ROUTINE_OPEN_SUFFIXES) or any(p in path for p in _ROUTINE_OPEN_PARTS)


def proc_target(path: str) -> tuple[int, str] | None:
    """``(pid, "mem" | "environ" | "maps")`` of a /proc/<pid>/... memory or environment path."""
    m = _PROC_MEMORY.fullmatch(path)
    return (int(m.group(1)), m.group(2)) if m else None


def tokens(text: str) -> set[str]:
    """Words of a path or argument (``/etc/falco/falco.yaml`` -> falco, yaml, etc)."""
    return {t for t in _TOKEN_SPLIT.split(text) if t}


def glob_regex(pattern: str) -> str:
    """One glob as a regular expression body (for ``fullmatch``)."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def expand_home(pattern: str, homes: Iterable[str]) -> list[str]:
    """``~/x`` once per home; an absolute or ``**`` pattern as is; anything else anywhere."""
    if pattern == "~" or pattern.startswith("~/"):
        return [h.rstrip("/") + pattern[1:] for h in homes]
    if pattern.startswith("/") or pattern.startswith("**"):
        return [pattern]
    return ["**/" + pattern]


def compile_globs(patterns: Iterable[str], homes: tuple[str, ...]) -> re.Pattern[str] | None:
    """All ``patterns`` as one anchored alternation (None when nothing can match).

    The ``**/tail`` patterns share one ``(?:.*/)?`` prefix: as separate alternatives each would
    backtrack over the whole path on its own, for every alternative (docs/performance.md, 7)."""
    expanded = [p for pat in patterns for p in expand_home(pat, homes)]
    anywhere = [glob_regex(p[3:]) for p in expanded if p.startswith("**/")]
    bodies = [glob_regex(p) for p in expanded if not p.startswith("**/")]
    if anywhere:
        bodies.append("(?:.*/)?(?:" + "|".join(anywhere) + ")")
    if not bodies:
        return None
    return re.compile("|".join(f"(?:{b})" for b in bodies), re.DOTALL)


def _contains_any(needles: Iterable[str]) -> re.Pattern[str] | None:
    """One regex that finds any of ``needles`` (a C-level ``any(n in path ...)``)."""
    kept = [re.escape(n) for n in needles if n]
    return re.compile("|".join(kept)) if kept else None


def home_dirs(uid: int) -> tuple[str, ...]:
    """The homes ``~`` means for ``uid``: its own; for root every passwd home (not ``/``)."""
    try:
        own = pwd.getpwuid(uid).pw_dir
    except (KeyError, OverflowError, ValueError):
        return ()
    homes = [own] if own and own != "/" else []
    if uid == 0:
        try:
            homes += [p.pw_dir for p in pwd.getpwall() if p.pw_dir and p.pw_dir != "/"]
        except OSError:
            pass
    return tuple(dict.fromkeys(h.rstrip("/") or "/" for h in homes))


def interpreter_ids(dirs: Iterable[str], names: Iterable[str]) -> dict[int, str]:
    """The file identities of ``names`` found in ``dirs`` (symlinks followed: /bin/sh is dash)."""
    ids: dict[int, str] = {}
    for d in dirs:
        for name in names:
            try:
                st = os.stat(os.path.join(d, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                ids.setdefault((st.st_dev << 64) | st.st_ino, name)
    return ids


def trusted_system_dirs(dirs: Iterable[str]) -> tuple[str, ...]:
    """``dirs`` that exist, are owned by root and not group/world-writable (others: warning)."""
    kept = []
    for d in dirs:
        d = d.rstrip("/") or "/"
        try:
            st = os.stat(d)
        except OSError:
            continue                   # absent here (e.g. /lib64 on arm64): nothing to trust
        if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or not stat.S_ISDIR(st.st_mode):
            log.warning("system directory dropped: not a root-owned, non-writable directory | dir=%s", d)
            continue
        kept.append(d)
    return tuple(kept)


class _Globs:
    """One path list: what it includes, less what its ``!`` patterns exclude."""

    __slots__ = ("include", "exclude")

    def __init__(self, patterns: Iterable[str], homes: tuple[str, ...]) -> None:
        patterns = tuple(patterns)
        self.include = compile_globs((p for p in patterns if not p.startswith("!")), homes)
        self.exclude = compile_globs((p[1:] for p in patterns if p.startswith("!") and p[1:]), homes)

    def fullmatch(self, path: str) -> bool:
        return self.include is not None and self.include.fullmatch(path) is not None \
            and (self.exclude is None or self.exclude.fullmatch(path) is None)


class _UidPatterns:
    """The uid-dependent pattern sets of one uid, compiled once. ``consumers``: (pattern, exe
    basenames honoured inside system_dirs, absolute executables honoured anywhere)."""

    __slots__ = ("credential", "persistence", "logs", "consumers")

    def __init__(self, a: Analysis, homes: tuple[str, ...]) -> None:
        self.credential = _Globs(a.credential_paths, homes)
        self.persistence = _Globs(a.persistence_paths, homes)
        self.logs = _Globs(a.log_paths, homes)
        self.consumers = tuple(
            (rx, frozenset(n for n in names if not n.startswith("/")),
             frozenset(normalise(n) for n in names if n.startswith("/")))
            for pat, names in a.credential_consumers if (rx := compile_globs((pat,), homes)) is not None)


class PathClasses:
    """Bitmask of every class of a path, per uid, cached (see the module docstring)."""

    __slots__ = ("a", "cache_limit", "system_dirs", "_system_prefixes", "_security", "_uids",
                 "by_uid", "_size", "_sens_prefixes", "_sens_patterns", "_susp_patterns",
                 "_security_any", "interpreter_ids")

    CACHE_PATH_MAX = 512               # longer paths are classified every time, never stored

    def __init__(self, a: Analysis, cache_limit: int = 8192,
                 system_dirs: tuple[str, ...] | None = None) -> None:
        self.a, self.cache_limit = a, cache_limit
        self.system_dirs = trusted_system_dirs(a.system_dirs) if system_dirs is None else system_dirs
        self._system_prefixes = tuple(d if d == "/" else d + "/" for d in self.system_dirs)
        self._security = frozenset(a.security_tool_names)
        # the same tests as analyzer.paths, compiled: this runs once per distinct path
        self._sens_prefixes = tuple(a.sensitive_path_prefixes)
        self._sens_patterns = _contains_any(a.sensitive_path_patterns)
        self._susp_patterns = _contains_any(a.suspicious_path_patterns)
        self._security_any = _contains_any(a.security_tool_names)
        self._uids: dict[int, _UidPatterns] = {}
        # (dev << 64 | ino) of each shell and interpreter in the system directories -> its name:
        # a ``#!`` script's exec carries its interpreter's identity (mm->exe_file), not its name
        self.interpreter_ids = interpreter_ids(self.system_dirs, a.shell_names + a.interpreter_names)
        # uid -> path -> bits: the remembered answers (read directly by Classifier.entry)
        self.by_uid: dict[int, dict[str, int]] = {}
        self._size = 0

    def bits(self, path: str, uid: int) -> int:
        """Every class of ``path`` (absolute, normalised) for a process of ``uid``."""
        per_uid = self.by_uid.get(uid)
        if per_uid is not None:
            hit = per_uid.get(path)
            if hit is not None:
                return hit
        else:
            per_uid = self.by_uid[uid] = {}
        value = self._classify(path, uid)
        if len(path) <= self.CACHE_PATH_MAX:
            if self._size >= self.cache_limit:
                self.by_uid.clear()
                self._size = 0
                per_uid = self.by_uid[uid] = {}
            per_uid[path] = value
            self._size += 1
        return value

    def patterns(self, uid: int) -> _UidPatterns:
        pats = self._uids.get(uid)
        if pats is None:
            pats = self._uids[uid] = _UidPatterns(self.a, home_dirs(uid))
        return pats

    def in_system_dir(self, path: str) -> bool:
        return path.startswith(self._system_prefixes)

    def legitimate_reader(self, path: str, uid: int, exe: str) -> bool:
        """``exe`` (the reading process's real binary, resolved) is a listed consumer of ``path``.

        A basename is honoured only for an executable inside a trusted system directory (a copy
        named ``ssh`` in /tmp is not ssh); an absolute entry only for exactly that executable.
        """
        if not exe:
            return False
        system = self.in_system_dir(exe)
        name = exe.rsplit("/", 1)[-1]
        return any(((system and name in names) or exe in paths) and rx.fullmatch(path)
                   for rx, names, paths in self.patterns(uid).consumers)

    def _classify(self, path: str, uid: int) -> int:
        if not path:
            return 0
        bits = 0
        if path.startswith(self._sens_prefixes) or (self._sens_patterns and self._sens_patterns.search(path)):
            bits |= SENSITIVE
        if not burst_ignorable_open(path):
            bits |= BURST_KEPT
        if is_memfd_or_deleted(path):
            bits |= MEMFD_DELETED | SUSPICIOUS
        elif self._susp_patterns and self._susp_patterns.search(path):
            bits |= SUSPICIOUS
        if DELETED_MARK in path:
            bits |= DELETED
        if "/." in path and any(c.startswith(".") and c not in (".", "..") for c in path.split("/")):
            bits |= HIDDEN
        if self.in_system_dir(path):
            bits |= SYSTEM
        if self._security_any and self._security_any.search(path) and not self._security.isdisjoint(tokens(path)):
            bits |= SECURITY_TOOL
        if path.startswith("/proc/") and _PROC_MEMORY.fullmatch(path):
            bits |= FOREIGN_PROC
        return bits | self._uid_bits(path, uid)

    def _uid_bits(self, path: str, uid: int) -> int:
        pats = self.patterns(uid)
        bits = 0
        if pats.credential.fullmatch(path):
            bits |= CREDENTIAL
        if pats.persistence.fullmatch(path):
            bits |= PERSISTENCE
        if pats.logs.fullmatch(path):
            bits |= LOG
        return bits
