"""Per-session state the context flags are derived from (casa-original.md §7).

A session holds its processes (keyed by tgid) and a bounded FIFO of its last
``recent_event_limit`` accepted events, in arrival order. Only what the flags and the
``analyzer.session`` snapshot need is kept: text fields are stage-side ``str`` (surrogateescape
for non-UTF-8 bytes) and are converted back with ``bus.to_wire`` on output.

Deliberate deviations: the security snapshot is the one carried by each exec event (read after
that exec by the collector) instead of a /proc read cached on first sight of a pid, and the
lineage comes from the sessionizer (wrappers already skipped); node names are still taken from
this session's own process entries, as in the original, so ancestors never seen in the session
(the gateway) contribute an empty name.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bus.text import from_wire, to_wire

__all__ = ["RecentEvent", "ProcessState", "SessionState", "text", "basename"]

EXEC, OPEN, CONNECT, EXIT = "exec", "open", "connect", "exit"
DELETED_MARK = " (deleted)"    # appended by the kernel's d_path to unlinked files
TRACKED_KINDS = frozenset({EXEC, OPEN, CONNECT, EXIT})


def text(value: Any) -> str:
    """A wire text field as a stage-side str ('' for missing or non-text values)."""
    if isinstance(value, (str, bytes)):
        return from_wire(value)
    return ""


def basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1] if path else ""


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


@dataclass(frozen=True, slots=True)
class RecentEvent:
    """One accepted event as the history flags and sessions.log see it (§7 RecentEvents)."""

    kind: str
    tgid: int
    ts_ns: int
    path: str = ""        # open: the opened path; exec: the exec path
    exe: str = ""         # exec: the file that actually runs (memfd:..., "... (deleted)")
    flags: int = 0
    mode: int = 0
    addr: str = ""
    port: int = 0
    # Classification under the current analysis values, computed once when the event enters the
    # window (history_flags.classify) and recomputed after a reload: sensitive open, counts
    # towards its kind's burst, write-intent open.
    sensitive: bool = False
    burst_kept: bool = False
    write: bool = False

    @classmethod
    def from_event(cls, ev: dict[str, Any]) -> "RecentEvent":
        kind = ev["kind"]
        return cls(kind=kind, tgid=_int(ev.get("tgid")), ts_ns=_int(ev.get("ts_ns")),
                   path=text(ev.get("path")).strip() if kind in (EXEC, OPEN) else "",
                   exe=text(ev.get("exe")).strip() if kind == EXEC else "",
                   flags=_int(ev.get("flags")) if kind == OPEN else 0,
                   mode=_int(ev.get("mode")) if kind == OPEN else 0,
                   addr=text(ev.get("addr")).strip() if kind == CONNECT else "",
                   port=_int(ev.get("port")) if kind == CONNECT else 0)

    def to_map(self) -> dict[str, Any]:
        """sessions.log §11.2 shape, with bus field names; empty/zero open fields omitted."""
        out: dict[str, Any] = {"ts_ns": self.ts_ns, "kind": self.kind, "tgid": self.tgid}
        if self.kind == OPEN:
            if self.path:
                out["path"] = to_wire(self.path)
            if self.flags:
                out["flags"] = self.flags
            if self.mode:
                out["mode"] = self.mode
        elif self.kind == EXEC:
            out["path"] = to_wire(self.path)
        elif self.kind == CONNECT:
            out["addr"], out["port"] = to_wire(self.addr), self.port
        return out



@dataclass(slots=True)
class ProcessState:
    """What the session knows about one process (§7 ProcessState)."""

    tgid: int
    ppid: int = 0
    uid: int = 0
    comm: str = ""
    exec_path: str = ""
    exe: str = ""
    args: tuple[str, ...] = ()
    lineage_tgids: tuple[int, ...] = ()     # from this process up to the root (sessionizer order)
    depth: int = 0                          # the sessionizer's depth, used when lineage is absent
    cap_eff: int | None = None
    seccomp: int | None = None
    opens: deque[str] = field(default_factory=deque)       # last N opened paths
    connects: deque[tuple[str, int]] = field(default_factory=deque)
    first_seen_ns: int = 0
    last_seen_ns: int = 0
    exit_ns: int | None = None

    @property
    def name(self) -> str:
        """Lineage node name: basename of the exec path, else the comm (§7 EXECVE)."""
        return basename(self.exec_path) or self.comm


@dataclass(slots=True)
class SessionState:
    """One session's processes, recent events and analyzer bookkeeping."""

    session_id: int
    recent_limit: int
    artifact_limit: int
    processes: dict[int, ProcessState] = field(default_factory=dict)
    recent: deque[RecentEvent] = field(default_factory=deque)
    created_ns: int | None = None
    updated_ns: int | None = None
    lifecycle: dict[str, Any] = field(default_factory=dict)   # last sessionizer.session map
    complete: bool = True             # False once the analyzer saw loss while this was open
    events: int = 0
    deleted_opens: int = 0            # entries with " (deleted)" across all processes' open lists

    def __post_init__(self) -> None:
        self.recent = deque(self.recent, maxlen=self.recent_limit)

    def observe(self, ev: dict[str, Any],
                classify: Callable[[RecentEvent], RecentEvent] | None = None) -> ProcessState:
        """Fold one accepted event into the state; return the process it belongs to.

        ``classify`` annotates the window entry (history_flags.classify with the current policy).
        """
        kind, ts = ev["kind"], _int(ev.get("ts_ns"))
        if self.created_ns is None:
            self.created_ns = ts
        self.updated_ns = ts
        self.events += 1
        proc = self._process(ev, ts)
        if kind == EXEC:
            self._exec(proc, ev)
        elif kind == OPEN:
            self._push_open(proc, text(ev.get("path")).strip())
        elif kind == CONNECT:
            proc.connects.append((text(ev.get("addr")).strip(), _int(ev.get("port"))))
        elif kind == EXIT and _int(ev.get("tid"), proc.tgid) == proc.tgid:
            proc.exit_ns = ts
        entry = RecentEvent.from_event(ev)
        self.recent.append(classify(entry) if classify else entry)
        return proc

    def reclassify(self, classify: Callable[[RecentEvent], RecentEvent]) -> None:
        """Annotate the whole window again (after a reload changed the analysis values)."""
        self.recent = deque((classify(e) for e in self.recent), maxlen=self.recent_limit)

    def _push_open(self, proc: ProcessState, path: str) -> None:
        """Append to the process's last-N opens, keeping ``deleted_opens`` exact."""
        opens = proc.opens
        if opens.maxlen is not None and len(opens) == opens.maxlen and DELETED_MARK in opens[0]:
            self.deleted_opens -= 1
        opens.append(path)
        if DELETED_MARK in path:
            self.deleted_opens += 1

    def _process(self, ev: dict[str, Any], ts: int) -> ProcessState:
        tgid = _int(ev.get("tgid"))
        proc = self.processes.get(tgid)
        if proc is None:
            proc = ProcessState(tgid=tgid, first_seen_ns=ts, opens=deque(maxlen=self.artifact_limit),
                                connects=deque(maxlen=self.artifact_limit))
            self.processes[tgid] = proc
        proc.ppid = _int(ev.get("ppid"), proc.ppid)
        proc.uid = _int(ev.get("uid"), proc.uid)
        if not proc.comm:
            proc.comm = text(ev.get("comm"))
        proc.last_seen_ns = ts
        return proc

    def _exec(self, proc: ProcessState, ev: dict[str, Any]) -> None:
        proc.exec_path = text(ev.get("path")).strip()
        proc.exe = text(ev.get("exe")).strip()
        argv = ev.get("argv")
        proc.args = tuple(text(a) for a in argv) if isinstance(argv, list) else ()
        lineage = ev.get("lineage")
        nodes = [n for n in lineage if isinstance(n, dict)] if isinstance(lineage, list) else []
        proc.lineage_tgids = tuple(_int(n.get("tgid")) for n in nodes)
        proc.depth = _int(ev.get("depth"))
        proc.exit_ns = None
        cap, sec = ev.get("cap_eff"), ev.get("seccomp")
        proc.cap_eff = cap if _int(cap, -1) >= 0 else None
        proc.seccomp = sec if _int(sec, -1) >= 0 else None

    def lineage_names(self, proc: ProcessState, max_depth: int) -> list[str]:
        """Node names from ``proc`` up to the root, at most ``max_depth + 1`` nodes (§4 Lineage)."""
        names = []
        for tgid in proc.lineage_tgids[: max_depth + 1]:
            node = self.processes.get(tgid)
            names.append(node.name if node else "")
        return names

    def lineage_depth(self, proc: ProcessState, max_depth: int) -> int:
        """Emitted nodes - 1 (0 without lineage), as BuildLineage's bounded walk gives it."""
        if not proc.lineage_tgids:
            return max(0, min(proc.depth, max_depth))
        return max(0, min(len(proc.lineage_tgids), max_depth + 1) - 1)
