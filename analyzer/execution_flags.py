"""execution.* flags (docs/original.md §8.4): per process, OR-ed into a sticky session value.

Computed for the exec'ing process on each exec (and merged again on its exit). Beyond the
original: the exec event's ``exe`` (the file behind an fd exec, e.g. ``memfd:payload (deleted)``)
is tested as well as its ``path``, so a real fileless exec sets ``memfd_or_deleted_exec`` even
though its path is ``/proc/self/fd/3`` or an ``execveat`` with an empty name.

Only the session's **tool processes** contribute (docs/rules.md): an exec with a role (the
runtime's own image, its shell wrapper, routine execs) sets nothing and names no lineage node;
the agent root names no lineage node (its image is the runtime; what it execs in place, a memfd
payload, still sets the path flags); and an exit counts only for a process whose exec the
session saw (a forked subshell's exit carries its parent's comm, ``bash``, and would set
``shell_in_chain``).

Paths are the absolute, normalised ones (``bus.paths.effective_path``): ``./.x86`` run from
/tmp/d is ``/tmp/d/.x86``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any
from operator import attrgetter, or_

from analyzer.path_classes import HIDDEN, MEMFD_DELETED, SUSPICIOUS, PathClasses
from analyzer.session_state import ProcessState, SessionState, basename
from policy import Analysis

__all__ = ["ExecutionFlags", "execution_flags", "exit_masquerade", "WELL_KNOWN_BINARIES",
           "EXECUTION_FIELDS"]

# Names a payload borrows to look like part of the system: core utilities, the sessionizer's
# routine execs, daemons and kernel threads. Interpreters and network tools are not here on
# purpose: nvm's node, conda's python and curl legitimately live outside the system directories.
WELL_KNOWN_BINARIES = frozenset({
    "id", "whoami", "uname", "pwd", "ip", "hostname", "ls", "cat", "ps", "top", "kill", "sleep",
    "echo", "date", "env", "grep", "sed", "awk", "find", "cp", "mv", "rm", "ln", "chmod", "chown",
    "mkdir", "touch", "tar", "gzip", "head", "tail", "sort", "uniq", "wc", "cut", "tr", "xargs",
    "sudo", "su", "passwd", "login", "cron", "crond", "atd", "systemd", "init", "dbus-daemon",
    "rsyslogd", "syslogd", "journalctl", "systemctl", "sshd", "agetty", "getty", "mount",
    "umount", "ifconfig", "netstat", "ss", "iptables", "kworker", "kthreadd", "ksoftirqd",
    "migration", "rcu_sched", "polkitd", "udevd", "systemd-udevd", "systemd-journald",
    "systemd-logind", "networkd-dispatcher", "containerd-shim", "snapd", "udisksd",
})


@dataclass(frozen=True, slots=True)
class ExecutionFlags:
    suspicious_path_exec: bool = False
    deep_chain: bool = False
    shell_in_chain: bool = False
    network_tool_in_chain: bool = False
    interpreter_in_chain: bool = False
    container_runtime_in_chain: bool = False
    memfd_or_deleted_exec: bool = False
    # beyond the original (docs/rules.md); reverse_shell, pipe_to_shell and loader_hijack need
    # the schema-2 exec fields and stay false until that phase (analyzer/pending_flags.py)
    reverse_shell: bool = False
    pipe_to_shell: bool = False
    loader_hijack: bool = False
    masquerade: bool = False
    hidden_path_exec: bool = False
    unresolved_exec: bool = False
    preload_injection: bool = False   # set by the tree (tree_signals.loader_hijack)

    def merge(self, other: "ExecutionFlags") -> "ExecutionFlags":
        """Sticky OR across the session's processes; ``self`` itself when nothing turns true."""
        if other is self or other is _NONE:
            return self
        if self is _NONE:
            return other
        mine = _values(self)
        merged = tuple(map(or_, mine, _values(other)))
        return self if merged == mine else ExecutionFlags(*merged)

    def values(self) -> tuple[bool, ...]:
        return _values(self)

    def newly_true(self, before: "ExecutionFlags") -> list[str]:
        return [f for f, a, b in zip(EXECUTION_FIELDS, self.values(), before.values()) if a and not b]

    def as_map(self) -> dict[str, bool]:
        return dict(zip(EXECUTION_FIELDS, self.values()))


EXECUTION_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ExecutionFlags))
_values = attrgetter(*EXECUTION_FIELDS)
_NONE = ExecutionFlags()


MEMO_LIMIT = 4096     # distinct (process image, lineage) inputs remembered per policy


def execution_flags(proc: ProcessState, session: SessionState, a: Analysis,
                    classes: PathClasses, memo: dict[tuple[Any, ...], ExecutionFlags] | None = None
                    ) -> ExecutionFlags:
    """The flags of one tool process, from its exec path, exe, argv and lineage.

    ``memo`` (one per policy) maps the inputs to the value: an agent runs the same tools under
    the same lineage over and over, and the same inputs giving the same object makes merging it
    into the session's sticky value an identity test (:meth:`ExecutionFlags.merge`)."""
    if not proc.tool:
        return _NONE
    names = session.lineage_names(proc, a.lineage_max_depth)
    depth = session.lineage_depth(proc, a.lineage_max_depth)
    if memo is None:
        return _flags(proc, names, depth, a, classes)
    key = (proc.exec_path, proc.exe, proc.comm, proc.uid, proc.args[0] if proc.args else None,
           proc.is_root, proc.exec_resolved, tuple(names), depth)
    flags = memo.get(key)
    if flags is None:
        if len(memo) >= MEMO_LIMIT:
            memo.clear()
        flags = memo[key] = _flags(proc, names, depth, a, classes)
    return flags


def _flags(proc: ProcessState, names: list[str], depth: int, a: Analysis,
           classes: PathClasses) -> ExecutionFlags:
    both = (classes.bits(proc.exec_path, proc.uid) if proc.exec_path else 0) | \
        (classes.bits(proc.exe, proc.uid) if proc.exe else 0)
    if not names and not proc.is_root:
        names = [proc.name]
    names = [n.rstrip("/").rsplit("/", 1)[-1] for n in names if n]
    return ExecutionFlags(
        suspicious_path_exec=bool(both & SUSPICIOUS),
        deep_chain=depth >= a.deep_chain_threshold,
        shell_in_chain=_any_in(names, a.shell_names),
        network_tool_in_chain=_any_in(names, a.network_tool_names),
        interpreter_in_chain=_any_in(names, a.interpreter_names),
        container_runtime_in_chain=_any_in(names, a.container_runtime_names),
        memfd_or_deleted_exec=bool(both & MEMFD_DELETED),
        masquerade=_masquerade(proc, a, classes),
        hidden_path_exec=bool(both & HIDDEN),
        unresolved_exec=not proc.exec_resolved,
    )


def _masquerade(proc: ProcessState, a: Analysis, classes: PathClasses) -> bool:
    """Run from outside the system directories under a system name (the exec path's or the
    real binary's basename, or argv[0]), or argv[0] naming another well-known binary than the
    one that runs (``exec -a sshd /usr/bin/python3``)."""
    path, exe = proc.exec_path, _undeleted(proc.exe)
    path_name, exe_name = basename(path), basename(exe)
    argv0 = basename(proc.args[0]).lstrip("-") if proc.args else ""
    known = _known(a)
    if path and not classes.in_system_dir(path) and (path_name in known or argv0 in known):
        return True
    if exe and not classes.in_system_dir(exe) and exe_name in known:
        return True
    return bool(argv0) and argv0 in known and argv0 not in (path_name, exe_name)


def exit_masquerade(proc: ProcessState, comm: str, a: Analysis, classes: PathClasses) -> bool:
    """At exit: a tool process run from outside the system directories renamed itself (its
    comm, e.g. by prctl(PR_SET_NAME)) to a system name."""
    if not proc.tool or not comm or comm == basename(proc.exec_path)[:15]:
        return False
    outside = (proc.exec_path and not classes.in_system_dir(proc.exec_path)) or \
        (proc.exe and not classes.in_system_dir(_undeleted(proc.exe)))
    return bool(outside) and comm.split("/")[0] in _known(a)


def _known(a: Analysis) -> frozenset[str]:
    return _known_names(a.shell_names)


@lru_cache(maxsize=8)
def _known_names(shells: tuple[str, ...]) -> frozenset[str]:
    return WELL_KNOWN_BINARIES.union(shells)


def _undeleted(path: str) -> str:
    return path[:-10] if path.endswith(" (deleted)") else path


def _any_in(names: list[str], wanted: tuple[str, ...]) -> bool:
    return any(n in wanted for n in names)
