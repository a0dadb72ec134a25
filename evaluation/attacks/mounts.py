"""The mount and network primitives the sandbox is built from (Linux, root, inside the namespaces).

Thin ctypes wrappers over mount(2), mount_setattr(2) and one ioctl, because the sandbox must
make *every* mount of its private namespace read-only in one call (``mount_setattr`` with
``AT_RECURSIVE``, Linux >= 5.12) and then open exactly the scratch-backed directories again;
the util-linux ``mount`` command cannot do the recursive part on Debian 12.

Every function raises ``OSError`` with the path in the message: a sandbox that cannot be built
must never run its scenario.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import os
import socket
import struct

__all__ = ["bind", "overlay", "set_readonly", "loopback_up"]

MS_BIND = 0x1000
MOUNT_ATTR_RDONLY = 0x1
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
SYS_MOUNT_SETATTR = 442          # the same number on every architecture (generic syscall table)
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    ret = _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None,
                      ctypes.c_ulong(flags), data.encode() if data else None)
    _check(ret, f"mount {source} on {target}")


def bind(source: str, target: str) -> None:
    """Bind ``source`` onto ``target`` (not recursive: submounts of the source are not carried)."""
    _mount(source, target, None, MS_BIND, None)


def overlay(lower: str, upper: str, work: str, target: str) -> None:
    """An overlayfs on ``target``: reads fall through to ``lower``, every write lands in ``upper``."""
    _mount("overlay", target, "overlay", 0, f"lowerdir={lower},upperdir={upper},workdir={work}")


def set_readonly(path: str, readonly: bool, recursive: bool) -> None:
    """Set (or clear) the read-only flag of the mount at ``path`` (and every mount below it)."""
    attr = _MountAttr(MOUNT_ATTR_RDONLY if readonly else 0, 0 if readonly else MOUNT_ATTR_RDONLY, 0, 0)
    flags = AT_RECURSIVE if recursive else 0
    ret = _libc.syscall(SYS_MOUNT_SETATTR, ctypes.c_int(AT_FDCWD), path.encode(), ctypes.c_uint(flags),
                        ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))
    _check(ret, f"mount_setattr {path} readonly={readonly} recursive={recursive}")


def loopback_up() -> None:
    """Bring ``lo`` up in a fresh network namespace (it starts down, with no other interface)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))
