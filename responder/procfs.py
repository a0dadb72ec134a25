"""What /proc says about processes, as plain data the target selection can be tested on.

The responder never trusts a pid alone: it needs each process's parent (to walk the ancestry to
the session's anchor), its real uid (CASA's own user is never a target), its state (a stopped
process is frozen) and its **start time** (a pid whose process started after the session first
saw that pid is a recycled pid). One :class:`Snapshot` is one pass over /proc; the selection
works on a snapshot, and every pid it picks is read again after its pidfd is open
(responder/signals.py), so a process that changed between the two is never signalled.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["ProcInfo", "Snapshot", "read_proc", "read_service_cgroup", "snapshot", "lazy_snapshot",
           "boot_wall_ns", "TICK_NS"]

TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ProcInfo:
    """One process: the fields of /proc/<pid>/stat and status the responder decides on."""

    pid: int
    ppid: int
    uid: int
    state: str          # R, S, D, T (stopped), t, Z, ...
    start_ticks: int    # field 22 of stat: clock ticks after boot
    comm: str = ""

    def start_wall_ns(self, boot_ns: int) -> int:
        return boot_ns + self.start_ticks * TICK_NS


@dataclass(slots=True)
class Snapshot:
    """pid -> ProcInfo at one moment, and the children of each.

    A full snapshot (:func:`snapshot`) read every process; a lazy one (:func:`lazy_snapshot`)
    reads a process the first time it is asked for (the targets a request names and their
    ancestors: a handful of reads instead of the whole of /proc), and knows no children."""

    procs: dict[int, ProcInfo]
    boot_ns: int
    loader: Callable[[int], ProcInfo | None] | None = None
    children: dict[int, list[int]] = field(default_factory=dict)
    cgroups: dict[int, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.loader is None and not self.children:
            for p in self.procs.values():
                self.children.setdefault(p.ppid, []).append(p.pid)

    def get(self, pid: int) -> ProcInfo | None:
        info = self.procs.get(pid)
        if info is None and self.loader is not None and pid > 0:
            info = self.loader(pid)
            if info is not None:
                self.procs[pid] = info
        return info

    def uid(self, pid: int) -> int:
        """The real uid (a full scan reads stat only; status is read here, for candidates)."""
        info = self.get(pid)
        if info is None:
            return -1
        if info.uid < 0:
            status = _read(f"/proc/{pid}/status")
            at = status.find(b"\nUid:") if status else -1
            if status is None or at < 0:
                return -1
            info = ProcInfo(info.pid, info.ppid, int(status[at + 5:].split(None, 1)[0]), info.state,
                            info.start_ticks, info.comm)
            self.procs[pid] = info
        return info.uid

    def cgroup(self, pid: int) -> str | None:
        """The service cgroup of ``pid`` (read_service_cgroup), read once per snapshot."""
        if pid not in self.cgroups:
            self.cgroups[pid] = read_service_cgroup(pid)
        return self.cgroups[pid]

    def ancestry(self, pid: int, limit: int = 4096) -> list[int]:
        """``pid`` and its ancestors up to pid 0, as far as the snapshot knows them."""
        out: list[int] = []
        cur = pid
        while cur > 0 and len(out) < limit:
            out.append(cur)
            info = self.get(cur)
            if info is None:
                break
            cur = info.ppid
        return out

    def descendants(self, pid: int) -> list[int]:
        """Every process below ``pid`` (not itself), parents before children (full snapshots)."""
        out: list[int] = []
        todo = list(self.children.get(pid, ()))
        while todo:
            cur = todo.pop()
            out.append(cur)
            todo.extend(self.children.get(cur, ()))
        return out


def boot_wall_ns() -> int:
    """Wall-clock ns of boot, to the precision of the clocks (stat's start time counts from it)."""
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def _read(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_proc(pid: int, proc: str = "/proc", with_uid: bool = True) -> ProcInfo | None:
    """/proc/<pid> as a ProcInfo; None when the process is gone (or not readable). The uid is
    status's real uid (the directory's owner follows the effective uid and dumpability);
    without ``with_uid`` it is -1 until :meth:`Snapshot.uid` reads it."""
    stat = _read(f"{proc}/{pid}/stat")
    status = _read(f"{proc}/{pid}/status") if stat is not None and with_uid else b""
    if stat is None or status is None:
        return None
    return parse_proc(pid, stat, status)


def parse_proc(pid: int, stat: bytes, status: bytes) -> ProcInfo | None:
    """Parse stat (the comm may hold spaces and ')': split after the last ')') and status."""
    close = stat.rfind(b")")
    if close < 0:
        return None
    comm = stat[stat.find(b"(") + 1:close].decode("utf-8", "replace")
    rest = stat[close + 2:].split()
    if len(rest) < 20:
        return None
    at = status.find(b"\nUid:")
    uid = int(status[at + 5:].split(None, 1)[0]) if at >= 0 else -1
    return ProcInfo(pid=pid, ppid=int(rest[1]), uid=uid, state=rest[0].decode(),
                    start_ticks=int(rest[19]), comm=comm)


def read_service_cgroup(pid: int, proc: str = "/proc") -> str | None:
    """The cgroup a service manager put ``pid`` in: the unified (``0::``) and ``name=systemd``
    paths, joined; None when unreadable. Controller-only v1 hierarchies are left out: they say
    how resources are shared, not which service a process belongs to."""
    raw = _read(f"{proc}/{pid}/cgroup")
    if raw is None:
        return None
    keep = [line.split(b":", 2)[2] for line in raw.splitlines()
            if line.startswith(b"0::") or b":name=systemd:" in line]
    return b"|".join(keep).decode("utf-8", "replace")


def snapshot(proc: str = "/proc") -> Snapshot:
    """Every process now (processes that exit during the scan are simply absent)."""
    procs: dict[int, ProcInfo] = {}
    for name in os.listdir(proc):
        if name.isdigit():
            info = read_proc(int(name), proc, with_uid=False)
            if info is not None:
                procs[info.pid] = info
    return Snapshot(procs, boot_wall_ns())


def lazy_snapshot(proc: str = "/proc") -> Snapshot:
    """A snapshot that reads each process when first asked for (no children)."""
    return Snapshot({}, boot_wall_ns(), loader=lambda pid: read_proc(pid, proc))
