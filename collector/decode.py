"""Kernel records (bpf/events.h ``struct event``) -> bus event maps (bus/events.py schema).

The header is unpacked with one ``struct.unpack_from`` (the hot path: ~1 µs); text is taken
from the record's bytes and turned into lossless ``str`` with ``bus.from_kernel``. ``EventStruct``
is the ctypes mirror of the C struct for a given set of limits; tests compare it, field by field,
with the class bcc builds from events.h, so the two cannot drift apart silently.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from dataclasses import dataclass
from typing import Any

from bus import from_kernel

__all__ = ["HEADER", "HEADER_SIZE", "KIND_NAMES", "SYSCALL_NAMES", "Decoded", "DecodeError",
           "decode", "event_struct", "ST_ARGV_TRUNCATED", "ST_ARGV_FLAT", "ST_PROVISIONAL",
           "ST_EXE_RESOLVED", "ST_EXE_DELETED", "ST_CAPS_VALID", "EV_EXEC", "EV_OPEN",
           "EV_CONNECT", "EV_EXIT", "EV_FORK"]

# enum event_kind / enum event_syscall / ST_* (bpf/events.h)
EV_EXEC, EV_OPEN, EV_CONNECT, EV_EXIT, EV_FORK = 1, 2, 3, 4, 5
KIND_NAMES = {EV_EXEC: "exec", EV_OPEN: "open", EV_CONNECT: "connect", EV_EXIT: "exit", EV_FORK: "fork"}
SYSCALL_NAMES = {0: "execve", 1: "execve", 2: "execveat", 3: "openat", 4: "openat2", 5: "open", 6: "connect"}
ST_ARGV_TRUNCATED, ST_ARGV_FLAT, ST_PROVISIONAL = 0x1, 0x2, 0x4
ST_EXE_RESOLVED, ST_EXE_DELETED, ST_CAPS_VALID = 0x8, 0x10, 0x20

# ts_ns flags cap_eff | kind syscall tgid tid ppid uid root depth | ret dirfd | mode exit_code
# child_tgid | seccomp | family port | addr | argc path_len | status | comm new_comm | pad
HEADER = struct.Struct("<QQQ8Iii3IiHH16sHHI16s16s4x")
HEADER_SIZE = HEADER.size            # == EVENT_HEADER_SIZE == offsetof(struct event, path)
COMM_LEN = 16
EXE_LEN = 256


class DecodeError(ValueError):
    """A record shorter than its header, or with an unknown kind."""


@dataclass(slots=True)
class Decoded:
    """A bus event plus the kernel-side facts the collector itself needs (not published)."""

    event: dict[str, Any]
    status: int
    depth: int
    new_comm: str

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
        ("new_comm", ctypes.c_char * COMM_LEN), ("pad", ctypes.c_char * 4),
        ("path", ctypes.c_char * max_path_len), ("exe", ctypes.c_char * EXE_LEN),
        ("argv", ctypes.c_char * (max_arg_len * max_args)),
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


def decode(raw: bytes, boot_epoch_ns: int, max_args: int, max_arg_len: int,
           max_path_len: int) -> Decoded:
    """One ring-buffer record -> Decoded. ``boot_epoch_ns`` = wall clock at boot (ns)."""
    if len(raw) < HEADER_SIZE:
        raise DecodeError(f"record of {len(raw)} bytes is shorter than the {HEADER_SIZE}-byte header")
    (ts, flags, cap_eff, kind, sc, tgid, tid, ppid, uid, root, depth, ret, dirfd, mode, exit_code,
     child, seccomp, family, port, addr, argc, path_len, status, comm, new_comm) = HEADER.unpack_from(raw)
    name = KIND_NAMES.get(kind)
    if name is None:
        raise DecodeError(f"record has unknown kind {kind}")
    ev: dict[str, Any] = {"kind": name, "ts_ns": ts + boot_epoch_ns, "tgid": tgid, "tid": tid,
                          "ppid": ppid, "uid": uid, "comm": from_kernel(comm), "root": root}
    if kind == EV_OPEN:
        ev.update(syscall=SYSCALL_NAMES.get(sc, "openat"), path=from_kernel(raw[HEADER_SIZE:]),
                  flags=flags, mode=mode, ret=ret, dirfd=dirfd)
    elif kind == EV_CONNECT:
        ev.update(family=family, addr=_address(family, addr), port=port, ret=ret)
    elif kind == EV_EXIT:
        ev["exit_code"] = exit_code
    elif kind == EV_FORK:
        ev["child_tgid"] = child
    else:
        _exec_fields(ev, raw, sc, flags, cap_eff, ret, dirfd, seccomp, argc, status,
                     max_args, max_arg_len, max_path_len)
    return Decoded(ev, status, depth, from_kernel(new_comm))


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
