"""Kernel records (bpf/events.h ``struct event``) -> bus event maps (bus/events.py schema).

The header is unpacked with one ``struct.unpack_from`` (the hot path: ~1 µs); text is taken
from the record's bytes and turned into lossless ``str`` with ``bus.from_kernel``. ``EventStruct``
is the ctypes mirror of the C struct for a given set of limits; tests compare it, field by field,
with the class bcc builds from events.h, so the two cannot drift apart silently.

Paths (docs/bus.md §5.9): for a relative exec/open path the kernel sends the names of its base
directory, leaf first (``dir_len`` bytes after an open's path, in the ``dir`` area of an exec);
``abspath`` is the path joined to that base and folded lexically (``bus.paths.normalise``). It is
published only when it differs from ``path``, and is ``""`` when the kernel could not finish the
walk (``dir_error`` says why; the collector counts it).
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
from dataclasses import dataclass
from typing import Any

from bus import from_kernel
from bus.paths import normalise

__all__ = ["HEADER", "HEADER_SIZE", "KIND_NAMES", "SYSCALL_NAMES", "Decoded", "DecodeError",
           "decode", "event_struct", "ST_ARGV_TRUNCATED", "ST_ARGV_FLAT", "ST_PROVISIONAL",
           "ST_EXE_RESOLVED", "ST_EXE_DELETED", "ST_CAPS_VALID", "ST_PATH_TRUNCATED", "ST_IDENTITY",
           "EV_EXEC", "EV_OPEN", "EV_CONNECT", "EV_EXIT", "EV_FORK", "DIR_NONE", "DIR_OK",
           "DIR_ERRORS", "EXE_LEN", "abspath_of", "user_dev"]

# enum event_kind / enum event_syscall / ST_* (bpf/events.h)
EV_EXEC, EV_OPEN, EV_CONNECT, EV_EXIT, EV_FORK = 1, 2, 3, 4, 5
KIND_NAMES = {EV_EXEC: "exec", EV_OPEN: "open", EV_CONNECT: "connect", EV_EXIT: "exit", EV_FORK: "fork"}
SYSCALL_NAMES = {0: "execve", 1: "execve", 2: "execveat", 3: "openat", 4: "openat2", 5: "open", 6: "connect"}
ST_ARGV_TRUNCATED, ST_ARGV_FLAT, ST_PROVISIONAL = 0x1, 0x2, 0x4
ST_EXE_RESOLVED, ST_EXE_DELETED, ST_CAPS_VALID = 0x8, 0x10, 0x20
ST_PATH_TRUNCATED, ST_IDENTITY = 0x40, 0x80
_PATH_BITS = ST_PATH_TRUNCATED | ST_IDENTITY
# enum dir_error: why the base-directory walk of a relative path did not finish (heartbeat
# counters unresolved_<name>); the negative ones are user space's own: no path to resolve.
DIR_NONE, DIR_OK = 0, 1
DIR_ERRORS = {2: "too_deep", 3: "too_long", 4: "unreadable", 5: "bad_fd", 6: "not_dir",
              7: "deleted", 8: "outside_root", -1: "path_unreadable", -2: "empty_path"}

# ts_ns flags cap_eff | kind syscall tgid tid ppid uid root depth | ret dirfd | mode exit_code
# child_tgid | seccomp | family port | addr | argc path_len | status | comm new_comm |
# dir_len dir_error | ino | dev | pad
HEADER = struct.Struct("<QQQ8Iii3IiHH16sHHI16s16sHHQI4x")
HEADER_SIZE = HEADER.size            # == EVENT_HEADER_SIZE == offsetof(struct event, path)
COMM_LEN = 16
EXE_LEN = 256
DIR_NAME_SLOT = 256                  # events.h: the dir area's slack (one name read)


class DecodeError(ValueError):
    """A record shorter than its header, or with an unknown kind."""


@dataclass(slots=True)
class Decoded:
    """A bus event plus the kernel-side facts the collector itself needs (not published)."""

    event: dict[str, Any]
    status: int
    depth: int
    new_comm: str
    dir_error: int = DIR_NONE     # DIR_ERRORS key when abspath is "" (-1: the path was unreadable)

    @property
    def provisional(self) -> bool:
        return bool(self.status & ST_PROVISIONAL)


def event_struct(max_args: int, max_arg_len: int, max_path_len: int) -> type[ctypes.Structure]:
    """The ctypes mirror of ``struct event`` for these limits."""
    fields = [
        ("ts_ns", ctypes.c_uint64), ("flags", ctypes.c_uint64), ("cap_eff", ctypes.c_uint64),
        ("kind", ctypes.c_uint32), ("syscall", ctypes.c_uint32), ("tgid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32), ("ppid", ctypes.c_uint32), ("uid", ctypes.c_uint32),
        ("root", ctypes.c_uint32), ("depth", ctypes.c_uint32), ("ret", ctypes.c_int32),
        ("dirfd", ctypes.c_int32), ("mode", ctypes.c_uint32), ("exit_code", ctypes.c_uint32),
        ("child_tgid", ctypes.c_uint32), ("seccomp", ctypes.c_int32), ("family", ctypes.c_uint16),
        ("port", ctypes.c_uint16), ("addr", ctypes.c_uint8 * 16), ("argc", ctypes.c_uint16),
        ("path_len", ctypes.c_uint16), ("status", ctypes.c_uint32), ("comm", ctypes.c_char * COMM_LEN),
        ("new_comm", ctypes.c_char * COMM_LEN), ("dir_len", ctypes.c_uint16),
        ("dir_error", ctypes.c_uint16), ("ino", ctypes.c_uint64), ("dev", ctypes.c_uint32),
        ("pad", ctypes.c_uint32), ("path", ctypes.c_char * max_path_len),
        ("exe", ctypes.c_char * EXE_LEN), ("argv", ctypes.c_char * (max_arg_len * max_args)),
        ("dir", ctypes.c_char * (max_path_len + DIR_NAME_SLOT)),
    ]
    return type("EventStruct", (ctypes.Structure,), {"_fields_": fields})


def _address(family: int, addr: bytes) -> str:
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, addr[:4])
    if family == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, addr)
    return ""


def _argv(area: bytes, argc: int, status: int, max_args: int, max_arg_len: int) -> list[str]:
    """argv slots (one NUL-terminated item per slot), or the flat args area of a new image."""
    if status & ST_ARGV_FLAT:
        items = area[:argc].split(b"\0")
        if items and items[-1] == b"":
            items.pop()
        return [from_kernel(a) for a in items]
    return [from_kernel(area[i * max_arg_len:(i + 1) * max_arg_len]) for i in range(min(argc, max_args))]


def user_dev(kdev: int) -> int:
    """A kernel ``dev_t`` (``s_dev``: major << 20 | minor) as stat(2) reports it (``st_dev``)."""
    return os.makedev(kdev >> 20, kdev & 0xFFFFF)


def abspath_of(path: str, names: bytes, dir_error: int) -> str | None:
    """``abspath`` for a path and the kernel's base-directory names (leaf first, NUL each), or
    None when it equals ``path`` (absolute and normal: not published).

    ``""`` when the path is relative and its base is unknown: the walk failed (``dir_error``).
    """
    if dir_error == DIR_OK:
        parts = names.split(b"\0")[:-1]
        parts.reverse()
        base = (b"/" + b"/".join(parts)).decode("utf-8", "surrogateescape")
        return normalise(path, base)
    if dir_error != DIR_NONE or not path.startswith("/"):
        return ""
    out = normalise(path)
    return None if out == path else out


def decode(raw: bytes, boot_epoch_ns: int, max_args: int, max_arg_len: int,
           max_path_len: int) -> Decoded:
    """One ring-buffer record -> Decoded. ``boot_epoch_ns`` = wall clock at boot (ns)."""
    if len(raw) < HEADER_SIZE:
        raise DecodeError(f"record of {len(raw)} bytes is shorter than the {HEADER_SIZE}-byte header")
    (ts, flags, cap_eff, kind, sc, tgid, tid, ppid, uid, root, depth, ret, dirfd, mode, exit_code,
     child, seccomp, family, port, addr, argc, path_len, status, comm, new_comm, dir_len, dir_error,
     ino, dev) = HEADER.unpack_from(raw)
    name = KIND_NAMES.get(kind)
    if name is None:
        raise DecodeError(f"record has unknown kind {kind}")
    ev: dict[str, Any] = {"kind": name, "ts_ns": ts + boot_epoch_ns, "tgid": tgid, "tid": tid,
                          "ppid": ppid, "uid": uid, "comm": from_kernel(comm), "root": root}
    d = Decoded(ev, status, depth, from_kernel(new_comm))
    if kind == EV_OPEN:
        end = HEADER_SIZE + path_len
        path = from_kernel(raw[HEADER_SIZE:end])
        ev.update(syscall=SYSCALL_NAMES.get(sc, "openat"), path=path, flags=flags, mode=mode,
                  ret=ret, dirfd=dirfd)
        # most opens: an absolute normal path, read-only, nothing to add (tested inline: a call
        # per open costs ~1 us; a last "." only means "maybe not normal", the call decides)
        if (dir_error or status & _PATH_BITS or path[:1] != "/" or "//" in path or "/./" in path
                or "/../" in path or path[-1] in "/."):
            _path_fields(d, path, raw[end:end + dir_len], dir_error, path_len, ino, dev)
    elif kind == EV_CONNECT:
        ev.update(family=family, addr=_address(family, addr), port=port, ret=ret)
    elif kind == EV_EXIT:
        ev["exit_code"] = exit_code
    elif kind == EV_FORK:
        ev["child_tgid"] = child
    else:
        _exec_fields(ev, raw, sc, flags, cap_eff, ret, dirfd, seccomp, argc, status,
                     max_args, max_arg_len, max_path_len)
        dir_off = HEADER_SIZE + max_path_len + EXE_LEN + max_args * max_arg_len
        _path_fields(d, ev["path"], raw[dir_off:dir_off + dir_len], dir_error, path_len, ino, dev)
    return d


def _path_fields(d: Decoded, path: str, names: bytes, dir_error: int, path_len: int, ino: int,
                 dev: int) -> None:
    """abspath, path_truncated, ino/dev of an exec or open (only the ones that apply)."""
    ev, status = d.event, d.status
    if path_len <= 1 and dir_error == DIR_NONE:
        dir_error = -1 if path_len == 0 else -2   # unreadable, or "" (never walked: ENOENT)
    absolute = abspath_of(path, names, dir_error)
    if absolute is not None:
        ev["abspath"] = absolute
        if not absolute:
            d.dir_error = dir_error
    if status & ST_PATH_TRUNCATED:
        ev["path_truncated"] = True
    if status & ST_IDENTITY:
        ev["ino"] = ino
        ev["dev"] = user_dev(dev)


def _exec_fields(ev: dict[str, Any], raw: bytes, sc: int, flags: int, cap_eff: int, ret: int,
                 dirfd: int, seccomp: int, argc: int, status: int, max_args: int,
                 max_arg_len: int, max_path_len: int) -> None:
    path = from_kernel(raw[HEADER_SIZE:HEADER_SIZE + max_path_len])
    exe_off = HEADER_SIZE + max_path_len
    exe = path
    if status & ST_EXE_RESOLVED:
        exe = from_kernel(raw[exe_off:exe_off + EXE_LEN])
        if status & ST_EXE_DELETED:
            exe += " (deleted)"
    caps_valid = bool(status & ST_CAPS_VALID)
    ev.update(syscall=SYSCALL_NAMES.get(sc, "execve"), path=path,
              argv=_argv(raw[exe_off + EXE_LEN:], argc, status, max_args, max_arg_len),
              argv_truncated=bool(status & ST_ARGV_TRUNCATED), ret=ret, exe=exe, dirfd=dirfd,
              flags=flags, cap_eff=cap_eff if caps_valid else None,
              seccomp=seccomp if caps_valid else None)
