"""execution.* flags (casa-original.md §8.4): per process, OR-ed into a sticky session value.

Computed for the exec'ing process on each exec (and merged again on its exit). Beyond the
original: the exec event's ``exe`` (the file behind an fd exec, e.g. ``memfd:payload (deleted)``)
is tested as well as its ``path``, so a real fileless exec sets ``memfd_or_deleted_exec`` even
though its path is ``/proc/self/fd/3`` or an ``execveat`` with an empty name.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from analyzer.paths import is_memfd_or_deleted, is_suspicious
from analyzer.session_state import ProcessState, SessionState
from policy import Analysis

__all__ = ["ExecutionFlags", "execution_flags"]


@dataclass(frozen=True, slots=True)
class ExecutionFlags:
    suspicious_path_exec: bool = False
    deep_chain: bool = False
    shell_in_chain: bool = False
    network_tool_in_chain: bool = False
    interpreter_in_chain: bool = False
    container_runtime_in_chain: bool = False
    memfd_or_deleted_exec: bool = False

    def merge(self, other: "ExecutionFlags") -> "ExecutionFlags":
        """Sticky OR across the session's processes."""
        return ExecutionFlags(*(getattr(self, f.name) or getattr(other, f.name) for f in fields(self)))

    def as_map(self) -> dict[str, bool]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def execution_flags(proc: ProcessState, session: SessionState, a: Analysis) -> ExecutionFlags:
    """The flags of one process, from its exec path, exe and lineage."""
    exec_texts = [t for t in (proc.exec_path, proc.exe) if t]
    names = session.lineage_names(proc, a.lineage_max_depth)
    if not names:
        names = [proc.name]
    names = [n.rstrip("/").rsplit("/", 1)[-1] for n in names if n]
    return ExecutionFlags(
        suspicious_path_exec=any(is_suspicious(t, a.suspicious_path_patterns) for t in exec_texts),
        deep_chain=session.lineage_depth(proc, a.lineage_max_depth) >= a.deep_chain_threshold,
        shell_in_chain=_any_in(names, a.shell_names),
        network_tool_in_chain=_any_in(names, a.network_tool_names),
        interpreter_in_chain=_any_in(names, a.interpreter_names),
        container_runtime_in_chain=_any_in(names, a.container_runtime_names),
        memfd_or_deleted_exec=any(is_memfd_or_deleted(t) for t in exec_texts),
    )


def _any_in(names: list[str], wanted: tuple[str, ...]) -> bool:
    return any(n in wanted for n in names)
