"""What an exec record says beyond path and argv: fds 0-2, the loader's environment, the euid.

The kernel side (bpf/fds.bpf.c, bpf/env.bpf.c) fills, after a successful exec, the record's
``fd_*`` area (ST_STDIO) and its LD_* slots (ST_ENV_READ); ``val[0..2]`` hold the euid after the
exec and the euid and CapEff before it (ST_PREV_CREDS, absent for execs built at
sched_process_exec: a new root's, or one the syscall tracepoints did not see).

Published fields (docs/bus.md §5.1): ``stdio`` (3 maps), ``parent_stdio`` (3 type names),
``ld_env`` (name -> value), ``env_truncated``, ``ld_env_truncated``, ``euid``, ``prev_euid``,
``prev_cap_eff``. A failed exec has no stdio and no environment (nothing ran).
"""

from __future__ import annotations

import struct
from typing import Any

from bus import from_kernel

__all__ = ["FD_TYPES", "LD_VARS", "FD_INFO", "exec_facts", "stdio", "ld_env"]

# enum fd_type (bpf/events.h)
FD_TYPES = ("none", "file", "dir", "pipe", "tty", "char", "inet", "unix", "socket", "other")
_WITH_INO = frozenset({"pipe", "inet", "unix", "socket"})
LD_VARS = ("LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT")
LD_VALUE_SLOT = 256
# fd_ino[3] fd_addr[48] fd_family[3] fd_port[3] fd_type[3] parent_fd_type[3] ld_len[6]
FD_INFO = struct.Struct("<3Q48s3H3H3B3B6H")

ST_LD_ENV_CUT, ST_ENV_TRUNCATED, ST_PREV_CREDS, ST_STDIO, ST_ENV_READ = 0x200, 0x100, 0x400, 0x800, 0x8000


def _fd_type(code: int) -> str:
    return FD_TYPES[code] if code < len(FD_TYPES) else "other"


def stdio(info: tuple[Any, ...]) -> tuple[list[dict[str, Any]], list[str]]:
    """(``stdio``, ``parent_stdio``) from the unpacked FD_INFO."""
    from collector.decode import address
    inos, addrs, families, ports, types, ptypes = (info[0:3], info[3], info[4:7], info[7:10],
                                                   info[10:13], info[13:16])
    out: list[dict[str, Any]] = []
    for i in range(3):
        kind = _fd_type(types[i])
        fd: dict[str, Any] = {"type": kind}
        if kind in _WITH_INO:
            fd["ino"] = inos[i]
        if kind == "inet":
            fd.update(family=families[i], addr=address(families[i], addrs[16 * i:16 * i + 16]),
                      port=ports[i])
        out.append(fd)
    return out, [_fd_type(t) for t in ptypes]


def ld_env(raw: bytes, off: int, lens: tuple[int, ...]) -> dict[str, str]:
    """LD_* name -> value. A variable that occurred more than once has its first and its last
    value joined with ':' (all three are ':'-separated lists to the loader), so the value names
    every library either loader (glibc: the last, musl: the first) may use."""
    out: dict[str, str] = {}
    for var, name in enumerate(LD_VARS):
        values = []
        for slot in (2 * var, 2 * var + 1):
            n = lens[slot]
            if n:
                start = off + slot * LD_VALUE_SLOT
                values.append(raw[start:start + n - 1])
        if values:
            if len(values) == 2 and values[0] == values[1]:
                values.pop()
            out[name] = from_kernel(b":".join(values))
    return out


def exec_facts(ev: dict[str, Any], raw: bytes, h: Any, lay: Any) -> None:
    """Adds the fd, environment and credential fields of an exec record to ``ev``."""
    status = h.status
    ev["euid"] = h.v0
    ev["prev_euid"] = h.v1 if status & ST_PREV_CREDS else None
    ev["prev_cap_eff"] = h.v2 if status & ST_PREV_CREDS else None
    if len(raw) < lay.ld_env:
        return
    info = FD_INFO.unpack_from(raw, lay.fd_info)
    if status & ST_STDIO:
        ev["stdio"], ev["parent_stdio"] = stdio(info)
    if status & ST_ENV_READ:
        ev["ld_env"] = ld_env(raw, lay.ld_env, info[16:22])
        if status & ST_ENV_TRUNCATED:
            ev["env_truncated"] = True
        if status & ST_LD_ENV_CUT:
            ev["ld_env_truncated"] = True
