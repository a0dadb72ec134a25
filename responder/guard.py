"""The responder's idea of "CASA itself": whose processes are never signalled.

Every CASA stage is a child of supervisord, so supervisord's pid protects them all through the
ancestry check (responder/targets.py): the collector, the stages, and any helper they start.
supervisord's pid comes from its pid file (root's directory, readable by all) and, when the
responder runs under it, from the responder's own parent. The responder's own pid, and the
``casa`` user's uid, are protected too; so is every pid an operator adds (``--protect-pid``),
and, when supervisord runs in a service cgroup of its own (``casa.service`` under systemd), every
process in that cgroup.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from responder.procfs import read_proc, read_service_cgroup
from responder.targets import Guard

__all__ = ["casa_guard", "SUPERVISORD_PID_FILE"]

SUPERVISORD_PID_FILE = Path("/run/casa-root/supervisord.pid")


def _pid_from(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 1 else None


def casa_guard(pid_file: Path = SUPERVISORD_PID_FILE, extra_pids: tuple[int, ...] = (),
               casa_user: str = "casa") -> Guard:
    """The guard for this host: supervisord, this process, the casa user, and ``extra_pids``."""
    pids = {os.getpid(), *extra_pids}
    sup = _pid_from(pid_file)
    if sup is not None:
        pids.add(sup)
    parent = read_proc(os.getppid())
    if parent is not None and parent.comm.startswith("supervisord"):
        pids.add(parent.pid)
    uids: set[int] = set()
    try:
        uids.add(pwd.getpwnam(casa_user).pw_uid)
    except KeyError:
        pass
    return Guard(protected_pids=frozenset(pids), protected_uids=frozenset(uids),
                 protected_cgroup=_own_cgroup(sup if sup is not None else
                                              parent.pid if parent is not None else None))


def _own_cgroup(supervisord: int | None) -> str | None:
    """supervisord's service cgroup if it is its own (systemd's casa.service), else None: in a
    container or a login session everything shares one cgroup, agents included."""
    if supervisord is None:
        return None
    mine, init = read_service_cgroup(supervisord), read_service_cgroup(1)
    return mine if mine and mine != init else None
