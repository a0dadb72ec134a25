"""Kernel records of the detection signals -> bus events (docs/bus.md §5.10-§5.22).

The kinds: ``chmod``, ``unlink``, ``rename``, ``truncate``, ``memfd`` (bpf/files.bpf.c), ``send``,
``bind``, ``listen``, ``socket`` (bpf/net.bpf.c), ``ptrace``, ``vm_read``, ``setid``, ``capset``
(bpf/privilege.bpf.c). Each has the common fields, ``syscall`` and ``ret``; the numbers that only
one kind has come from the header's ``val[0..3]`` (bpf/events.h says which is which).

Paths follow §5.9 as an open's do (``abspath``, ``path_truncated``), with two additions: a rename's
second path (``new_path``, ``new_abspath``, ``new_path_truncated``), and the fd calls (fchmod,
ftruncate), whose ``path`` is the fd's file: the full path the kernel walked up from the file
itself, or, when the walk could not finish, the file's own name with ``abspath: ""``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bus import from_kernel
from collector.decode import (DIR_NONE, DIR_OK, HEADER_SIZE, SYSCALL_NAMES, Decoded, Header,
                              abspath_of, address, path_fields)
from collector.dns import parse_query

__all__ = ["decode_signal", "SIGNAL_KINDS"]

ST_CONNECTED, ST_FD_PATH, ST_NEW_PATH_TRUNCATED = 0x1000, 0x2000, 0x4000
SIGNAL_KINDS = ("chmod", "unlink", "rename", "truncate", "memfd", "ptrace", "vm_read", "send",
                "bind", "listen", "socket", "setid", "capset")


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _s64(v: int) -> int:
    return v - (1 << 64) if v & (1 << 63) else v


def _path(d: Decoded, raw: bytes, h: Header) -> int:
    """``path`` (and its §5.9 fields) of the record's first path; returns where it ended."""
    end = HEADER_SIZE + h.path_len
    names = raw[end:end + h.dir_len]
    leaf = from_kernel(raw[HEADER_SIZE:end])
    if h.status & ST_FD_PATH:
        _fd_path(d, leaf, names, h.dir_error)
    else:
        d.event["path"] = leaf
        path_fields(d, leaf, names, h.dir_error, h.path_len, h.ino, h.dev)
    return end + h.dir_len


def _fd_path(d: Decoded, leaf: str, names: bytes, dir_error: int) -> None:
    """fchmod/ftruncate: the fd's file, walked up from itself (leaf first, NUL each)."""
    if dir_error == DIR_OK:
        parts = names.split(b"\0")[:-1]
        parts.reverse()
        d.event["path"] = from_kernel(b"/" + b"/".join(parts))
        return
    d.event["path"] = leaf
    d.event["abspath"] = ""
    d.dir_error = dir_error if dir_error != DIR_NONE else -1


def _new_path(d: Decoded, raw: bytes, h: Header, start: int) -> None:
    """rename's second path: new_path, new_abspath, new_path_truncated."""
    end = start + h.path2_len
    path = from_kernel(raw[start:end])
    dir_error = h.dir2_error
    if h.path2_len <= 1 and dir_error == DIR_NONE:
        dir_error = -1 if h.path2_len == 0 else -2
    d.event["new_path"] = path
    absolute = abspath_of(path, raw[end:end + h.dir2_len], dir_error)
    if absolute is not None:
        d.event["new_abspath"] = absolute
        if not absolute:
            d.new_dir_error = dir_error
    if h.status & ST_NEW_PATH_TRUNCATED:
        d.event["new_path_truncated"] = True


def _chmod(d: Decoded, raw: bytes, h: Header) -> None:
    d.event.update(dirfd=h.dirfd, mode=h.mode, flags=h.flags)
    if h.status & ST_FD_PATH:
        d.event["fd"] = _s32(h.v0)
    _path(d, raw, h)


def _unlink(d: Decoded, raw: bytes, h: Header) -> None:
    d.event.update(dirfd=h.dirfd, flags=h.flags)
    _path(d, raw, h)


def _rename(d: Decoded, raw: bytes, h: Header) -> None:
    d.event.update(dirfd=h.dirfd, new_dirfd=_s32(h.v0), flags=h.flags)
    _new_path(d, raw, h, _path(d, raw, h))


def _truncate(d: Decoded, raw: bytes, h: Header) -> None:
    d.event["length"] = _s64(h.v0)
    if h.status & ST_FD_PATH:
        d.event["fd"] = _s32(h.v1)
    _path(d, raw, h)


def _memfd(d: Decoded, raw: bytes, h: Header) -> None:
    d.event.update(name=from_kernel(raw[HEADER_SIZE:HEADER_SIZE + h.path_len]), flags=h.flags)


def _ptrace(d: Decoded, raw: bytes, h: Header) -> None:
    d.event.update(request=_s64(h.v0), target=h.v1)


def _vm_read(d: Decoded, raw: bytes, h: Header) -> None:
    d.event["target"] = h.v0


def _send(d: Decoded, raw: bytes, h: Header) -> None:
    """UDP destination, bytes, and (for a DNS query) the question's length and hash only."""
    ev = d.event
    ev.update(family=h.family, addr=address(h.family, h.addr), port=h.port, bytes=h.v0,
              sock_type=h.v1, messages=h.v2, connected=bool(h.status & ST_CONNECTED))
    if h.path_len:
        q = parse_query(raw[HEADER_SIZE:HEADER_SIZE + h.path_len])
        if q is None:
            d.dns_unparsed = True
        else:
            ev.update(dns_qname_len=q.qname_len, dns_qname_hash=q.qname_hash, dns_qtype=q.qtype)


def _bind(d: Decoded, raw: bytes, h: Header) -> None:
    d.event.update(family=h.family, addr=address(h.family, h.addr), port=h.port)


def _listen(d: Decoded, raw: bytes, h: Header) -> None:
    d.event.update(family=h.family, addr=address(h.family, h.addr), port=h.port, backlog=_s32(h.v0))


def _socket(d: Decoded, raw: bytes, h: Header) -> None:
    d.event.update(family=h.family, type=h.v0, protocol=_s32(h.v1))


_ID_COUNT = {"setuid": 1, "setgid": 1, "setreuid": 2, "setregid": 2, "setresuid": 3, "setresgid": 3}


def _setid(d: Decoded, raw: bytes, h: Header) -> None:
    ids = [_s32(v) for v in (h.v0, h.v1, h.v2)][:_ID_COUNT.get(d.event["syscall"], 3)]
    d.event.update(ids=ids, euid=h.v3 & 0xFFFFFFFF, egid=h.v3 >> 32)


def _capset(d: Decoded, raw: bytes, h: Header) -> None:
    d.event.update(effective=h.v0, permitted=h.v1, inheritable=h.v2, pid=_s32(h.v3))


_DECODERS: dict[str, Callable[[Decoded, bytes, Header], None]] = {
    "chmod": _chmod, "unlink": _unlink, "rename": _rename, "truncate": _truncate, "memfd": _memfd,
    "ptrace": _ptrace, "vm_read": _vm_read, "send": _send, "bind": _bind, "listen": _listen,
    "socket": _socket, "setid": _setid, "capset": _capset,
}


def decode_signal(d: Decoded, raw: bytes, h: Header) -> None:
    """Adds ``syscall``, ``ret`` and the kind's own fields to ``d.event`` (kind already set)."""
    ev: dict[str, Any] = d.event
    ev["syscall"] = SYSCALL_NAMES.get(h.syscall, "")
    ev["ret"] = h.ret
    _DECODERS[ev["kind"]](d, raw, h)
