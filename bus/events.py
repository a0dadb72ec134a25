"""Event maps carried in ``events`` lists, one table per kind (mirrors docs/bus.md §Events).

Events are plain dicts on the hot path; this module is their schema and validator. Every event
has ``kind`` plus the common fields; text fields (``comm``, ``path``, ``argv``, ``exe``) follow
bus.text (msgpack str when UTF-8, bin otherwise). Times are wall-clock ns since the epoch
(``ts_ns`` = bpf_ktime_get_boot_ns + (CLOCK_REALTIME - CLOCK_BOOTTIME) measured at collector start); pids are kernel tgids unless named ``tid``.

Stage-added fields (sessionizer and analyzer) are listed in STAGE_FIELDS. Optional fields (absent
in older recordings or when they do not apply, e.g. ``abspath`` of an absolute normal path) are in
OPTIONAL_FIELDS: checked for their type when present.

Schema 2 (SCHEMA, carried as the envelope key ``schema``) added the optional path and identity
fields (docs/bus.md §5.9). A subscriber drops events whose kind it does not know for their topic
and counts them as ``unknown_kind`` (not malformed): a newer publisher's new kinds are expected,
not damage (:func:`known_kinds`, used by bus.Subscriber).
"""

from __future__ import annotations

from typing import Any

__all__ = ["SCHEMA", "KINDS", "COMMON_FIELDS", "KIND_FIELDS", "OPTIONAL_FIELDS", "STAGE_FIELDS",
           "TOPIC_KINDS", "validate_event", "known_kinds", "EXEC", "OPEN", "CONNECT", "EXIT",
           "FORK", "ROOT", "LOSS"]

SCHEMA = 2          # event schema version; publishers put it in every envelope (``schema``)

EXEC, OPEN, CONNECT, EXIT, FORK, ROOT, LOSS = "exec", "open", "connect", "exit", "fork", "root", "loss"
KINDS = (EXEC, OPEN, CONNECT, EXIT, FORK, ROOT, LOSS)

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
}

# Schema 2: paths and identity (docs/bus.md §5.9). Absent means: abspath -- ``path`` already is
# absolute and normal; path_truncated -- false; ino/dev -- not a successful exec or write-intent open.
_PATH_FIELDS: dict[str, tuple[type, ...]] = {
    "abspath": TEXT,           # absolute, normalised path; "" = relative and its base unresolved
    "path_truncated": (bool,),  # the path was cut at the kernel's buffer (max_path_len - 1/2 bytes)
    "ino": (int,),             # inode number (exec: mm->exe_file; open: the opened file)
    "dev": (int,),             # device as stat(2) st_dev reports it
}
OPTIONAL_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    EXEC: dict(_PATH_FIELDS),
    OPEN: {**_PATH_FIELDS, "dirfd": (int,)},   # dirfd: absent in recordings from before it
}

# Topic suffix -> the kinds a map on it may have (§6); anything else is an unknown kind.
TOPIC_KINDS: dict[str, frozenset[str]] = {
    "event": frozenset(KINDS),
    "decision": frozenset({"decision"}),
    "session": frozenset({"session"}),
    "control": frozenset({"control"}),
}


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
    return problems
