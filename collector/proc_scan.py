"""Read processes from /proc: what the collector needs to find agent roots at start-up.

Nothing that happened before the probes were attached is seen by them, so the collector seeds
its tracked set from /proc after attaching. Processes vanish while being read: every read
tolerates that (the process is simply skipped). Text is lossless (bus.from_kernel).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bus import from_kernel

__all__ = ["ProcInfo", "read_proc", "scan", "exe_of", "full_fd_exe", "PROC"]

PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class ProcInfo:
    pid: int          # tgid
    ppid: int
    uid: int          # owner of /proc/PID (the effective uid)
    comm: str
    exe: str          # /proc/PID/exe target ("" for kernel threads or when unreadable)
    argv: tuple[str, ...]


def exe_of(pid: int, proc: Path = PROC) -> str:
    """The executable path of ``pid``, or "" when it is gone or has none."""
    try:
        return os.fsdecode(os.readlink(proc / str(pid) / "exe"))
    except OSError:
        return ""


def _ppid(stat: bytes) -> int:
    # comm may hold spaces and parentheses: the fields after it start after the LAST ')'
    return int(stat[stat.rindex(b")") + 2:].split()[1])


def read_proc(pid: int, proc: Path = PROC) -> ProcInfo | None:
    """One process, or None if it exited (or is unreadable) meanwhile."""
    base = proc / str(pid)
    try:
        stat = (base / "stat").read_bytes()
        comm = (base / "comm").read_bytes().rstrip(b"\n")
        cmdline = (base / "cmdline").read_bytes()
        uid = base.stat().st_uid
    except OSError:
        return None
    try:
        ppid = _ppid(stat)
    except (ValueError, IndexError):
        return None
    items = cmdline.split(b"\0")
    if items and items[-1] == b"":
        items.pop()
    return ProcInfo(pid=pid, ppid=ppid, uid=uid, comm=from_kernel(comm), exe=exe_of(pid, proc),
                    argv=tuple(from_kernel(a) for a in items))


def scan(proc: Path = PROC) -> dict[int, ProcInfo]:
    """Every readable process (threads are not listed in /proc's top level)."""
    out: dict[int, ProcInfo] = {}
    for entry in os.scandir(proc):
        if entry.name.isdigit():
            info = read_proc(int(entry.name), proc)
            if info is not None:
                out[info.pid] = info
    return out


def full_fd_exe(pid: int, name: str, proc: Path = PROC) -> str:
    """The full path of a file exec'd through an fd, when /proc still shows it.

    The kernel side only has the file's name (``a (deleted)``); right after the exec,
    /proc/PID/exe names the same file with its directory (``/tmp/x/a (deleted)``). Used only
    when the basenames agree (the process may have exec'd again or exited); else ``name``.
    """
    link = exe_of(pid, proc)
    if link and os.path.basename(link) == name:
        return link
    return name
