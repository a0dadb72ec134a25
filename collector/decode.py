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

The exec's fd and environment facts are decoded by collector/exec_facts.py, the kinds of the
detection signals (chmod ... capset) by collector/signals.py.
"""

from __future__ import annotations

import ctypes
import functools
import os
import socket
import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

from bus import from_kernel
from bus.paths import normalise

__all__ = ["HEADER", "HEADER_SIZE", "KIND_NAMES", "SYSCALL_NAMES", "Decoded", "DecodeError",
           "decode", "event_struct", "ST_ARGV_TRUNCATED", "ST_ARGV_FLAT", "ST_PROVISIONAL",
           "ST_EXE_RESOLVED", "ST_EXE_DELETED", "ST_CAPS_VALID", "ST_PATH_TRUNCATED", "ST_IDENTITY",
           "EV_EXEC", "EV_OPEN", "EV_CONNECT", "EV_EXIT", "EV_FORK", "DIR_NONE", "DIR_OK",
           "DIR_ERRORS", "EXE_LEN", "abspath_of", "user_dev", "Header", "Layout", "layout",
           "address", "path_fields", "LD_SLOTS", "LD_VALUE_SLOT"]

# enum event_kind / enum event_syscall / ST_* (bpf/events.h)
EV_EXEC, EV_OPEN, EV_CONNECT, EV_EXIT, EV_FORK = 1, 2, 3, 4, 5
KIND_NAMES = {EV_EXEC: "exec", EV_OPEN: "open", EV_CONNECT: "connect", EV_EXIT: "exit", EV_FORK: "fork",
              6: "chmod", 7: "unlink", 8: "rename", 9: "truncate", 10: "memfd", 11: "ptrace",
              12: "vm_read", 13: "send", 14: "bind", 15: "listen", 16: "socket", 17: "setid",
              18: "capset"}
SYSCALL_NAMES = {0: "execve", 1: "execve", 2: "execveat", 3: "openat", 4: "openat2", 5: "open",
                 6: "connect", 7: "chmod", 8: "fchmod", 9: "fchmodat", 10: "fchmodat2", 11: "unlink",
                 12: "unlinkat", 13: "rmdir", 14: "rename", 15: "renameat", 16: "renameat2",
                 17: "truncate", 18: "ftruncate", 19: "memfd_create", 20: "ptrace",
                 21: "process_vm_readv", 22: "process_vm_writev", 23: "sendto", 24: "sendmsg",
                 25: "sendmmsg", 26: "bind", 27: "listen", 28: "socket", 29: "setuid",
                 30: "setreuid", 31: "setresuid", 32: "setgid", 33: "setregid", 34: "setresgid",
                 35: "capset"}
ST_ARGV_TRUNCATED, ST_ARGV_FLAT, ST_PROVISIONAL = 0x1, 0x2, 0x4
ST_EXE_RESOLVED, ST_EXE_DELETED, ST_CAPS_VALID = 0x8, 0x10, 0x20
ST_PATH_TRUNCATED, ST_IDENTITY = 0x40, 0x80
_PATH_BITS = ST_PATH_TRUNCATED | ST_IDENTITY
LD_SLOTS, LD_VALUE_SLOT = 6, 256     # events.h: first and last occurrence of 3 variables
# enum dir_error: why the base-directory walk of a relative path did not finish (heartbeat
# counters unresolved_<name>); the negative ones are user space's own: no path to resolve.
DIR_NONE, DIR_OK = 0, 1
DIR_ERRORS = {2: "too_deep", 3: "too_long", 4: "unreadable", 5: "bad_fd", 6: "not_dir",
              7: "deleted", 8: "outside_root", -1: "path_unreadable", -2: "empty_path"}

# ts_ns flags cap_eff | kind syscall tgid tid ppid uid root depth | ret dirfd | mode exit_code
# child_tgid | seccomp | family port | addr | argc path_len | status | comm new_comm |
# dir_len dir_error | ino | dev | pad | path2_len dir2_len dir2_error pad2 | val[4]
HEADER = struct.Struct("<QQQ8Iii3IiHH16sHHI16s16sHHQI4xHHH2x4Q")
HEADER_SIZE = HEADER.size            # == EVENT_HEADER_SIZE == offsetof(struct event, path)


class Header(NamedTuple):
    """The unpacked header, by name (exec and the signal kinds; opens use the tuple directly)."""

    ts_ns: int
    flags: int
    cap_eff: int
    kind: int
    syscall: int
    tgid: int
    tid: int
    ppid: int
    uid: int
    root: int
    depth: int
    ret: int
    dirfd: int
    mode: int
    exit_code: int
    child_tgid: int
    seccomp: int
    family: int
    port: int
    addr: bytes
    argc: int
    path_len: int
    status: int
    comm: bytes
    new_comm: bytes
    dir_len: int
    dir_error: int
    ino: int
    dev: int
    path2_len: int
    dir2_len: int
    dir2_error: int
    v0: int
    v1: int
    v2: int
    v3: int
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
    new_dir_error: int = DIR_NONE  # the same for a rename's new_abspath
    dns_unparsed: bool = False    # send: the kernel saw a DNS query header, the question did not parse

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
        ("pad", ctypes.c_uint32), ("path2_len", ctypes.c_uint16), ("dir2_len", ctypes.c_uint16),
        ("dir2_error", ctypes.c_uint16), ("pad2", ctypes.c_uint16), ("val", ctypes.c_uint64 * 4),
        ("path", ctypes.c_char * max_path_len),
        ("exe", ctypes.c_char * EXE_LEN), ("argv", ctypes.c_char * (max_arg_len * max_args)),
        ("fd_ino", ctypes.c_uint64 * 3), ("fd_addr", ctypes.c_uint8 * 48),
        ("fd_family", ctypes.c_uint16 * 3), ("fd_port", ctypes.c_uint16 * 3),
        ("fd_type", ctypes.c_uint8 * 3), ("parent_fd_type", ctypes.c_uint8 * 3),
        ("ld_len", ctypes.c_uint16 * LD_SLOTS), ("ld_env", ctypes.c_char * (LD_SLOTS * LD_VALUE_SLOT)),
        ("dir", ctypes.c_char * (max_path_len + DIR_NAME_SLOT)),
    ]
    return type("EventStruct", (ctypes.Structure,), {"_fields_": fields})


@dataclass(frozen=True, slots=True)
class Layout:
    """Offsets of an exec record's areas after ``path`` (they depend on the limits)."""

    exe: int
    argv: int
    fd_info: int        # fd_ino .. ld_len, one struct (exec_facts.FD_INFO)
    ld_env: int
    dir: int


@functools.lru_cache(maxsize=8)
def layout(max_args: int, max_arg_len: int, max_path_len: int) -> Layout:
    cls = event_struct(max_args, max_arg_len, max_path_len)
    return Layout(cls.exe.offset, cls.argv.offset, cls.fd_ino.offset, cls.ld_env.offset, cls.dir.offset)


def address(family: int, addr: bytes) -> str:
    """Dotted IPv4 / RFC 5952 IPv6 text of a network-order address ("" for other families)."""
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
    h = HEADER.unpack_from(raw)
    (ts, flags, cap_eff, kind, sc, tgid, tid, ppid, uid, root, depth, ret, dirfd, mode, exit_code,
     child, seccomp, family, port, addr, argc, path_len, status, comm, new_comm, dir_len, dir_error,
     ino, dev) = h[:29]
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
            path_fields(d, path, raw[end:end + dir_len], dir_error, path_len, ino, dev)
    elif kind == EV_CONNECT:
        ev.update(family=family, addr=address(family, addr), port=port, ret=ret)
    elif kind == EV_EXIT:
        ev["exit_code"] = exit_code
    elif kind == EV_FORK:
        ev["child_tgid"] = child
    elif kind == EV_EXEC:
        _exec(d, raw, Header._make(h), layout(max_args, max_arg_len, max_path_len), max_args, max_arg_len)
    else:
        from collector.signals import decode_signal   # the detection kinds (chmod ... capset)
        decode_signal(d, raw, Header._make(h))
    return d


def path_fields(d: Decoded, path: str, names: bytes, dir_error: int, path_len: int, ino: int,
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


def _exec(d: Decoded, raw: bytes, h: Header, lay: Layout, max_args: int, max_arg_len: int) -> None:
    from collector.exec_facts import exec_facts
    ev, status = d.event, h.status
    path = from_kernel(raw[HEADER_SIZE:lay.exe])
    exe = path
    if status & ST_EXE_RESOLVED:
        exe = from_kernel(raw[lay.exe:lay.exe + EXE_LEN])
        if status & ST_EXE_DELETED:
            exe += " (deleted)"
    caps_valid = bool(status & ST_CAPS_VALID)
    ev.update(syscall=SYSCALL_NAMES.get(h.syscall, "execve"), path=path,
              argv=_argv(raw[lay.argv:lay.fd_info], h.argc, status, max_args, max_arg_len),
              argv_truncated=bool(status & ST_ARGV_TRUNCATED), ret=h.ret, exe=exe, dirfd=h.dirfd,
              flags=h.flags, cap_eff=h.cap_eff if caps_valid else None,
              seccomp=h.seccomp if caps_valid else None)
    exec_facts(ev, raw, h, lay)
    path_fields(d, path, raw[lay.dir:lay.dir + h.dir_len], h.dir_error, h.path_len, h.ino, h.dev)
