"""Event maps carried in ``events`` lists, one table per kind (mirrors docs/bus.md §Events).

Events are plain dicts on the hot path; this module is their schema and validator. Every event
has ``kind`` plus the common fields; text fields (``comm``, ``path``, ``argv``, ``exe``) follow
bus.text (msgpack str when UTF-8, bin otherwise). Times are wall-clock ns since the epoch
(``ts_ns`` = bpf_ktime_get_boot_ns + (CLOCK_REALTIME - CLOCK_BOOTTIME) measured at collector start); pids are kernel tgids unless named ``tid``.

Stage-added fields (sessionizer and analyzer) are listed in STAGE_FIELDS. Optional fields (absent
in older recordings or when they do not apply, e.g. ``abspath`` of an absolute normal path) are in
OPTIONAL_FIELDS: checked for their type when present.

Schema 2 (SCHEMA, carried as the envelope key ``schema``) added the optional path and identity
fields (docs/bus.md §5.9), the exec's fd, environment and credential fields, and the kinds of
the detection signals (chmod ... capset, §5.10-§5.22). A subscriber drops events whose kind it does not know for their topic
and counts them as ``unknown_kind`` (not malformed): a newer publisher's new kinds are expected,
not damage (:func:`known_kinds`, used by bus.Subscriber).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable
from typing import Any

__all__ = ["SCHEMA", "KINDS", "COMMON_FIELDS", "KIND_FIELDS", "OPTIONAL_FIELDS", "STAGE_FIELDS",
           "TOPIC_KINDS", "validate_event", "plainly_valid", "known_kind", "known_kinds", "EXEC",
           "OPEN", "CONNECT", "EXIT", "FORK", "ROOT", "LOSS", "SIGNAL_KINDS", "FD_TYPES", "TEXT_FIELDS"]

SCHEMA = 2          # event schema version; publishers put it in every envelope (``schema``)

EXEC, OPEN, CONNECT, EXIT, FORK, ROOT, LOSS = "exec", "open", "connect", "exit", "fork", "root", "loss"
# schema 2: the detection signals (docs/bus.md §5.10-§5.22)
SIGNAL_KINDS = ("chmod", "unlink", "rename", "truncate", "memfd", "ptrace", "vm_read", "send",
                "bind", "listen", "socket", "setid", "capset")
KINDS = (EXEC, OPEN, CONNECT, EXIT, FORK, ROOT, LOSS, *SIGNAL_KINDS)
# what an exec's fds 0-2 are (stdio[i]["type"], parent_stdio[i])
FD_TYPES = ("none", "file", "dir", "pipe", "tty", "char", "inet", "unix", "socket", "other")
# top-level text fields of any kind (str, or bytes when not UTF-8); ld_env's values are text too
TEXT_FIELDS = ("comm", "path", "exe", "abspath", "new_path", "new_abspath", "name")

TEXT = (str, bytes)
OPT_INT = (int, type(None))

# field -> accepted types. Common to exec/open/connect/exit/fork/root.
COMMON_FIELDS: dict[str, tuple[type, ...]] = {
    "kind": (str,),
    "ts_ns": (int,),      # wall clock, ns since the Unix epoch
    "tgid": (int,),       # process id (kernel tgid)
    "tid": (int,),        # thread id (kernel pid) that made the call
    "ppid": (int,),       # tgid of real_parent, read with BTF offsets at event time
    "uid": (int,),        # real uid
    "comm": TEXT,         # task comm at event time (for exec: the comm BEFORE the exec)
    "root": (int,),       # tgid of the tracked root this process descends from (0: none yet)
}

KIND_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    EXEC: {
        "syscall": (str,),       # "execve" | "execveat"
        "path": TEXT,            # filename as passed by the caller (not resolved)
        "argv": (list,),         # argv[0..], each item TEXT; at most max_args items of max_arg_len bytes
        "argv_truncated": (bool,),  # more args, or a longer arg, than the limits
        "ret": (int,),           # 0 on success, -errno on failure
        "exe": TEXT,             # what actually runs: for fd execs (execveat AT_EMPTY_PATH,
                                 # /proc/self/fd/N, /dev/fd/N) the file behind the fd, e.g.
                                 # "memfd:x" or "/tmp/a (deleted)"; else equal to path
        "dirfd": (int,),         # execveat dirfd (AT_FDCWD=-100 for execve)
        "flags": (int,),         # execveat flags (0 for execve)
        "cap_eff": OPT_INT,      # CapEff bitmask after the exec; None if it could not be read
        "seccomp": OPT_INT,      # seccomp mode after the exec (0 disabled); None if unknown
    },
    OPEN: {
        "syscall": (str,),       # "openat" | "openat2" | "open"
        "path": TEXT,            # raw user string (relative paths are not resolved)
        "flags": (int,),         # open flags (O_WRONLY=1, O_RDWR=2, O_CREAT=0x40, ...)
        "mode": (int,),
        "ret": (int,),           # fd, or -errno
    },
    CONNECT: {
        "family": (int,),        # 2 (AF_INET) or 10 (AF_INET6)
        "addr": (str,),          # dotted IPv4 or RFC 5952 IPv6 text
        "port": (int,),          # host byte order
        "ret": (int,),           # 0, or -errno (-115 EINPROGRESS for non-blocking sockets)
    },
    EXIT: {
        "exit_code": (int,),     # the process's exit status as in wait(2) (code << 8 | signal)
    },
    FORK: {
        "child_tgid": (int,),    # the new process (threads are not reported)
    },
    ROOT: {
        "profile": (str,),       # config/casa.json profile that matched
        "reason": (str,),        # "bootstrap" (found in /proc at start) | "exec"
        "exe": TEXT,
        "argv": (list,),
    },
    LOSS: {
        "count": (int,),         # events lost since the previous loss event
        "where": (str,),         # "kernel" (ring buffer reserve failed) | "collector" (bus full)
    },
    # ---- schema 2: the detection signals; every one has syscall and ret ----
    "chmod": {
        "syscall": (str,), "ret": (int,),
        "path": TEXT,            # as passed; fchmod: the fd's file (full path, or its name)
        "dirfd": (int,),         # fchmodat/fchmodat2 dirfd; -100 (AT_FDCWD) otherwise
        "mode": (int,),          # the new mode (S_ISUID 0o4000, S_ISGID 0o2000, ...)
        "flags": (int,),         # fchmodat2 flags; 0 otherwise
    },
    "unlink": {
        "syscall": (str,), "ret": (int,),   # unlink | unlinkat | rmdir
        "path": TEXT, "dirfd": (int,),
        "flags": (int,),         # unlinkat flags (AT_REMOVEDIR 0x200); 0 otherwise
    },
    "rename": {
        "syscall": (str,), "ret": (int,),   # rename | renameat | renameat2
        "path": TEXT, "new_path": TEXT, "dirfd": (int,), "new_dirfd": (int,),
        "flags": (int,),         # renameat2 flags (RENAME_NOREPLACE 1, RENAME_EXCHANGE 2, ...)
    },
    "truncate": {
        "syscall": (str,), "ret": (int,),   # truncate | ftruncate
        "path": TEXT,            # ftruncate: the fd's file
        "length": (int,),        # bytes
    },
    "memfd": {
        "syscall": (str,), "ret": (int,),   # memfd_create; ret: the new fd
        "name": TEXT, "flags": (int,),      # MFD_CLOEXEC 1, MFD_ALLOW_SEALING 2, MFD_EXEC 0x10 ...
    },
    "ptrace": {
        "syscall": (str,), "ret": (int,),
        "request": (int,),       # PTRACE_ATTACH 16, PTRACE_SEIZE 0x4206, PTRACE_PEEKDATA 2, ...
        "target": (int,),        # pid argument
    },
    "vm_read": {
        "syscall": (str,), "ret": (int,),   # process_vm_readv | process_vm_writev
        "target": (int,),
    },
    "send": {
        "syscall": (str,), "ret": (int,),   # sendto | sendmsg | sendmmsg
        "family": (int,), "addr": (str,), "port": (int,),
        "bytes": (int,),         # datagram bytes (sent, or asked for when the call failed)
        "sock_type": (int,),     # SOCK_DGRAM 2, SOCK_RAW 3, ...
        "messages": (int,),      # 1, or sendmmsg's message count
        "connected": (bool,),    # no address given: the destination is the socket's peer
    },
    "bind": {"syscall": (str,), "ret": (int,), "family": (int,), "addr": (str,), "port": (int,)},
    "listen": {
        "syscall": (str,), "ret": (int,),
        "family": (int,), "addr": (str,), "port": (int,),   # the socket's own address
        "backlog": (int,),
    },
    "socket": {
        "syscall": (str,), "ret": (int,),
        "family": (int,),        # AF_PACKET 17, AF_INET 2, AF_INET6 10, ...
        "type": (int,),          # SOCK_RAW 3, SOCK_DGRAM 2, SOCK_PACKET 10 (| SOCK_NONBLOCK ...)
        "protocol": (int,),
    },
    "setid": {
        "syscall": (str,), "ret": (int,),   # setuid ... setresgid
        "ids": (list,),          # the ids asked for, in argument order; -1 = unchanged
        "euid": (int,), "egid": (int,),     # after the call
    },
    "capset": {
        "syscall": (str,), "ret": (int,),
        "effective": (int,), "permitted": (int,), "inheritable": (int,),   # u64 masks asked for
        "pid": (int,),           # the header's target pid (0: itself)
    },
}

# Schema 2: paths and identity (docs/bus.md §5.9). Absent means: abspath -- ``path`` already is
# absolute and normal; path_truncated -- false; ino/dev -- not a successful exec or write-intent open.
_PATH_FIELDS: dict[str, tuple[type, ...]] = {
    "abspath": TEXT,           # absolute, normalised path; "" = relative and its base unresolved
    "path_truncated": (bool,),  # the path was cut at the kernel's buffer (max_path_len - 1/2 bytes)
    "ino": (int,),             # inode number (exec: mm->exe_file; open: the opened file)
    "dev": (int,),             # device as stat(2) st_dev reports it
}
_SIGNAL_PATH = {"abspath": TEXT, "path_truncated": (bool,)}
OPTIONAL_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    EXEC: {**_PATH_FIELDS,
           "stdio": (list,),           # 3 maps {"type", "ino"?, "family"?, "addr"?, "port"?}
           "parent_stdio": (list,),    # 3 type names
           "ld_env": (dict,),          # LD_PRELOAD / LD_LIBRARY_PATH / LD_AUDIT -> text
           "env_truncated": (bool,),   # more environment entries than the kernel checks
           "ld_env_truncated": (bool,),  # a value cut at 255 bytes, or 3+ occurrences of one
           "euid": (int,),             # effective uid after the exec
           "prev_euid": OPT_INT,       # ... before it (None: the exec was built after the fact)
           "prev_cap_eff": OPT_INT},   # CapEff before the exec (None: as prev_euid)
    OPEN: {**_PATH_FIELDS, "dirfd": (int,)},   # dirfd: absent in recordings from before it
    "chmod": {**_SIGNAL_PATH, "fd": (int,)},   # fd: fchmod
    "unlink": dict(_SIGNAL_PATH),
    "rename": {**_SIGNAL_PATH, "new_abspath": TEXT, "new_path_truncated": (bool,)},
    "truncate": {**_SIGNAL_PATH, "fd": (int,)},   # fd: ftruncate
    "send": {"dns_qname_len": (int,),   # a DNS query: the first question's name, dotted, its length
             "dns_qname_hash": (int,),  # ... and a 63-bit hash of it (never the name itself)
             "dns_qtype": (int,)},      # ... and its QTYPE (1 A, 16 TXT, 28 AAAA, ...)
}

# Topic suffix -> the kinds a map on it may have (§6); anything else is an unknown kind.
TOPIC_KINDS: dict[str, frozenset[str]] = {
    "event": frozenset(KINDS),
    "decision": frozenset({"decision"}),
    "session": frozenset({"session"}),
    "control": frozenset({"control"}),
}


def known_kind(kind: Any) -> bool:
    """Is ``kind`` an event kind of the bus tables (the others are counted as unknown_kind)?"""
    return type(kind) is str and kind in KIND_FIELDS


def known_kinds(topic: str) -> frozenset[str] | None:
    """The kinds ``topic`` may carry (None: any, e.g. a heartbeat or a topic of a newer stage)."""
    return TOPIC_KINDS.get(topic.rpartition(".")[2])


# Fields added downstream. sessionizer.event adds the first group; analyzer.event passes them on.
STAGE_FIELDS: dict[str, tuple[type, ...]] = {
    "session_id": (int,),     # sessionizer: the session this event belongs to
    "depth": (int,),          # sessionizer: lineage depth of tgid (wrappers not counted)
    "lineage": (list,),       # sessionizer, exec only: [{"tgid","ppid","comm"}] from tgid up to the root
    "profile": (str,),        # sessionizer: the profile of the session
}

_LOSS_COMMON = {"kind": (str,), "ts_ns": (int,)}


def validate_event(event: Any) -> list[str]:
    """Return a list of problems (empty: valid). Unknown extra fields are allowed."""
    if not isinstance(event, dict):
        return [f"event is {type(event).__name__}, not a map"]
    kind = event.get("kind")
    if kind not in KIND_FIELDS:
        return [f"unknown kind {kind!r}"]
    required = {**(_LOSS_COMMON if kind == LOSS else COMMON_FIELDS), **KIND_FIELDS[kind]}
    problems = []
    for name, types in required.items():
        if name not in event:
            problems.append(f"{kind}: missing field {name!r}")
        elif not isinstance(event[name], types) or (isinstance(event[name], bool) and bool not in types):
            problems.append(f"{kind}: field {name!r} is {type(event[name]).__name__}")
    for name, types in OPTIONAL_FIELDS.get(kind, {}).items():
        if name in event and (not isinstance(event[name], types)
                              or (isinstance(event[name], bool) and bool not in types)):
            problems.append(f"{kind}: field {name!r} is {type(event[name]).__name__}")
    if kind in (EXEC, ROOT) and isinstance(event.get("argv"), list):
        if not all(isinstance(a, TEXT) for a in event["argv"]):
            problems.append(f"{kind}: argv items must be text")
    if kind == EXEC:
        problems.extend(_exec_problems(event))
    elif kind == "setid" and isinstance(event.get("ids"), list):
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in event["ids"]):
            problems.append("setid: ids must be ints")
    return problems


def _exec_problems(event: dict[str, Any]) -> list[str]:
    """stdio, parent_stdio and ld_env beyond their container types."""
    problems = []
    stdio = event.get("stdio")
    if isinstance(stdio, list) and (len(stdio) != 3 or not all(
            isinstance(fd, dict) and fd.get("type") in FD_TYPES for fd in stdio)):
        problems.append("exec: stdio must be 3 maps with a known type")
    parent = event.get("parent_stdio")
    if isinstance(parent, list) and (len(parent) != 3 or not all(t in FD_TYPES for t in parent)):
        problems.append("exec: parent_stdio must be 3 known types")
    ld_env = event.get("ld_env")
    if isinstance(ld_env, dict) and not all(isinstance(k, str) and isinstance(v, TEXT)
                                            for k, v in ld_env.items()):
        problems.append("exec: ld_env must map names to text")
    return problems


# ---- the per-event fast path in front of validate_event (the sessionizer's, for every event) ----
# ``plainly_valid`` answers True only for events that ``validate_event`` accepts too, judged by
# exact field types (one C-level tuple lookup against every type signature the tables above
# allow); False means "ask validate_event", which decides and words the problems. Derived from
# the tables, so a new kind or field is picked up without a change here
# (tests/sessionizer/test_core_fast_paths.py checks that the two never disagree). Kept because
# it spares the sessionizer 3.6-4.2 us of its ~10 us per event (docs/performance.md).

_TEXT_TYPES = frozenset((str, bytes))
_ARGV_KINDS = frozenset(("exec", "root"))


def _type_signatures(fields: dict[str, tuple[type, ...]]) -> frozenset[tuple[type, ...]]:
    """Every tuple of exact field types a valid event of this kind can have (a few dozen)."""
    return frozenset(itertools.product(*fields.values()))


def _signatures() -> dict[str, tuple[Callable[[dict[str, Any]], Any], frozenset[tuple[type, ...]]]]:
    return {kind: (operator.itemgetter(*{**COMMON_FIELDS, **fields}),
                   _type_signatures({**COMMON_FIELDS, **fields}))
            for kind, fields in KIND_FIELDS.items() if kind != LOSS}


# kind -> (fields getter, accepted type signatures), from the bus tables
_SIGNATURES = _signatures()


def plainly_valid(event: Any) -> bool:
    """True if ``bus.validate_event`` would find nothing, judged by exact types only (no
    subclasses, so no bool posing as an int). False means "ask validate_event"."""
    if type(event) is not dict:
        return False
    kind = event.get("kind")
    entry = _SIGNATURES.get(kind) if type(kind) is str else None
    if entry is None:
        return False
    getter, signatures = entry
    try:
        if tuple(map(type, getter(event))) not in signatures:
            return False
    except KeyError:                                  # a required field is missing
        return False
    if kind in _ARGV_KINDS:
        for a in event["argv"]:
            if type(a) not in _TEXT_TYPES:
                return False
    return True
