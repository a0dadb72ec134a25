"""Per-session state the context flags are derived from (docs/original.md §7).

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

from bus.paths import effective_path, is_normal_absolute
from bus.text import from_wire, to_wire

__all__ = ["RecentEvent", "ProcessState", "SessionState", "text", "basename", "int_field",
           "event_path", "open_fields"]

EXEC, OPEN, CONNECT, EXIT = "exec", "open", "connect", "exit"
# Schema-2 kinds the history indices use (docs/bus.md §1); the original's four above.
RENAME, UNLINK, TRUNCATE, CHMOD, SEND = "rename", "unlink", "truncate", "chmod", "send"
BIND, LISTEN, SETID, CAPSET = "bind", "listen", "setid", "capset"
DELETED_MARK = " (deleted)"    # appended by the kernel's d_path to unlinked files
ORIGINAL_KINDS = frozenset({EXEC, OPEN, CONNECT, EXIT})
TRACKED_KINDS = ORIGINAL_KINDS | {RENAME, UNLINK, TRUNCATE, CHMOD, SEND, BIND, LISTEN, SETID, CAPSET,
                                  "memfd", "socket", "ptrace", "vm_read"}
PATH_KINDS = frozenset({OPEN, EXEC, RENAME, UNLINK, TRUNCATE, CHMOD})
ADDR_KINDS = frozenset({CONNECT, SEND, BIND, LISTEN})


def text(value: Any) -> str:
    """A wire text field as a stage-side str ('' for missing or non-text values)."""
    if type(value) is str:
        return value
    if isinstance(value, (str, bytes)):
        return from_wire(value)
    return ""


def basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1] if path else ""


def int_field(value: Any, default: int = 0) -> int:
    if type(value) is int:          # the common case, and excludes bool
        return value
    return value if isinstance(value, int) and not isinstance(value, bool) else default


@dataclass(slots=True)
class RecentEvent:
    """One accepted event as the history flags and sessions.log see it (§7 RecentEvents).

    Treated as a value once it is in a window (a reload builds new entries); only
    ``Classifier.entry`` annotates a fresh one before that.
    Not ``frozen``: a frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__``, which makes building one per event about four times dearer.
    """

    kind: str
    tgid: int
    ts_ns: int
    path: str = ""        # open: the opened path; exec: the exec path
    exe: str = ""         # exec: the file that actually runs (memfd:..., "... (deleted)"), else path
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
    # False: a relative path whose base the kernel could not resolve (compared as given).
    resolved: bool = True
    # analyzer.path_classes bits of ``path`` for the event's uid, set by Classifier.entry (not
    # part of the window's value: a reload recomputes what the window needs).
    cls: int = field(default=0, compare=False)

    @classmethod
    def from_event(cls, ev: dict[str, Any]) -> "RecentEvent":
        kind, get = ev["kind"], ev.get
        tgid, ts = get("tgid"), get("ts_ns")
        if type(tgid) is not int or type(ts) is not int:
            tgid, ts = int_field(tgid), int_field(ts)
        if kind == OPEN:
            path, resolved, flags, mode = open_fields(ev)
            return cls(OPEN, tgid, ts, path, "", flags, mode, "", 0, False, False, False, resolved)
        # positional arguments throughout: keywords cost a third more per construction
        if kind == EXEC:
            path, resolved = event_path(ev)
            exe, raw = get("exe"), get("path")
            # not an fd exec: the file that runs is the (resolved) exec path itself
            exe = path if exe == raw or not exe else text(exe)
            return cls(EXEC, tgid, ts, path, exe, 0, 0, "", 0, False, False, False, resolved)
        if kind in ADDR_KINDS:
            return cls(kind, tgid, ts, "", "", 0, 0, text(get("addr")).strip(), int_field(get("port")))
        if kind in PATH_KINDS:
            path, resolved = event_path(ev)
            return cls(kind, tgid, ts, path, "", int_field(get("flags")), 0, "", 0, False, False, False,
                       resolved)
        return cls(kind, tgid, ts)

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
        elif self.kind in ADDR_KINDS:
            out["addr"], out["port"] = to_wire(self.addr), self.port
        elif self.path:
            out["path"] = to_wire(self.path)
        return out


def open_fields(ev: dict[str, Any]) -> tuple[str, bool, int, int]:
    """An OPEN's (path, resolved, flags, mode), as every window entry of it holds them."""
    path, resolved = event_path(ev)
    get = ev.get
    flags, mode = get("flags", 0), get("mode", 0)
    if type(flags) is not int or type(mode) is not int:
        flags, mode = int_field(flags), int_field(mode)
    return path, resolved, flags, mode


def event_path(ev: dict[str, Any], key: str = "path") -> tuple[str, bool]:
    """``bus.paths.effective_path`` with the common case (absolute, normal, no ``abspath``)
    answered without the call: every flag compares this path."""
    raw = ev.get(key)
    if type(raw) is str and raw[:1] == "/" and ("abspath" if key == "path" else "new_abspath") not in ev \
            and ("/." not in raw and "//" not in raw and raw[-1] != "/" or is_normal_absolute(raw)):
        return raw, True
    return effective_path(ev, key)



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
    # last N opened paths / connects; made on first use (an empty deque costs 760 bytes, and
    # most processes of an agent never connect)
    opens: deque[str] | None = None
    connects: deque[tuple[str, int]] | None = None
    first_seen_ns: int = 0
    last_seen_ns: int = 0
    exit_ns: int | None = None
    exec_seen: bool = False       # an exec of this process is in the session (not fork-only)
    role: str = ""                # the sessionizer's role of its latest exec (agent, wrapper, ...)
    is_root: bool = False         # the agent root itself (tgid == the event's ``root``)
    euid: int | None = None       # after the latest exec; prev_* before it (None: unknown)
    prev_euid: int | None = None
    prev_cap_eff: int | None = None
    exec_resolved: bool = True    # False: a relative exec path the kernel could not resolve
    reimaged: bool = False        # a root that exec'd another image in place (sessionizer ``reimaged``)

    @property
    def tool(self) -> bool:
        """One of the session's tool processes: exec'd here, and not as the runtime's own image
        (an exec with a role). The agent root is one only for what it execs in place (a
        memfd), never as a lineage name (see lineage_names)."""
        return self.exec_seen and not self.role

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
        The analyzer's hot path builds the classified entry itself and calls :meth:`fold`.
        """
        entry = RecentEvent.from_event(ev)
        return self.fold(ev, classify(entry) if classify else entry)

    def fold(self, ev: dict[str, Any], entry: RecentEvent) -> ProcessState:
        """:meth:`observe` with the window entry already built (and classified) from ``ev``."""
        kind, ts = entry.kind, entry.ts_ns
        if self.created_ns is None:
            self.created_ns = ts
        self.updated_ns = ts
        self.events += 1
        # the process, created on first sight; its ppid and uid as of this event (inline: every
        # event comes here)
        tgid = entry.tgid
        proc = self.processes.get(tgid)
        if proc is None:
            proc = self.processes[tgid] = ProcessState(tgid=tgid, first_seen_ns=ts,
                                                       is_root=tgid == ev.get("root"))
        ppid, uid = ev.get("ppid"), ev.get("uid")
        if type(ppid) is not int:
            ppid = int_field(ppid, proc.ppid)
        if type(uid) is not int:
            uid = int_field(uid, proc.uid)
        proc.ppid, proc.uid, proc.last_seen_ns = ppid, uid, ts
        if not proc.comm:
            proc.comm = text(ev.get("comm"))
        if kind == OPEN:
            opens = proc.opens
            if opens is None:
                opens = proc.opens = deque(maxlen=self.artifact_limit)
            elif len(opens) == opens.maxlen and DELETED_MARK in opens[0]:
                self.deleted_opens -= 1           # the oldest, about to fall out, was deleted
            opens.append(entry.path)
            if DELETED_MARK in entry.path:
                self.deleted_opens += 1
        elif kind == EXEC:
            self._exec(proc, ev, entry)
        elif kind == CONNECT:
            if proc.connects is None:
                proc.connects = deque(maxlen=self.artifact_limit)
            proc.connects.append((entry.addr, entry.port))
        elif kind == EXIT and int_field(ev.get("tid"), proc.tgid) == proc.tgid:
            proc.exit_ns = ts
        self.recent.append(entry)
        return proc

    def reclassify(self, classify: Callable[[RecentEvent], RecentEvent]) -> None:
        """Annotate the whole window again (after a reload changed the analysis values)."""
        self.recent = deque((classify(e) for e in self.recent), maxlen=self.recent_limit)

    def _exec(self, proc: ProcessState, ev: dict[str, Any], entry: RecentEvent) -> None:
        proc.exec_path, proc.exe = entry.path, entry.exe
        proc.exec_seen, proc.exec_resolved = True, entry.resolved
        proc.reimaged = proc.reimaged or ev.get("reimaged") is True
        role = ev.get("role")
        proc.role = role if type(role) is str else ("?" if role else "")
        if proc.role and (proc.exe.startswith("memfd:") or proc.exe.endswith(DELETED_MARK)):
            proc.role = ""         # never the runtime's own image: a fileless exec is a tool's
        proc.euid, proc.prev_euid = _opt_int(ev.get("euid")), _opt_int(ev.get("prev_euid"))
        proc.prev_cap_eff = _opt_int(ev.get("prev_cap_eff"))
        argv = ev.get("argv")
        proc.args = tuple(text(a) for a in argv) if isinstance(argv, list) else ()
        lineage = ev.get("lineage")
        nodes = [n for n in lineage if isinstance(n, dict)] if isinstance(lineage, list) else []
        proc.lineage_tgids = tuple(int_field(n.get("tgid")) for n in nodes)
        proc.depth = int_field(ev.get("depth"))
        proc.exit_ns = None
        cap, sec = ev.get("cap_eff"), ev.get("seccomp")
        proc.cap_eff = cap if int_field(cap, -1) >= 0 else None
        proc.seccomp = sec if int_field(sec, -1) >= 0 else None

    def lineage_names(self, proc: ProcessState, max_depth: int) -> list[str]:
        """Node names from ``proc`` up to the root, at most ``max_depth + 1`` nodes (§4 Lineage).

        Only the session's tool processes name a node: one never seen in the session (the
        gateway), a fork-only child (a subshell: its comm is its parent's), the agent root and
        any process whose exec has a role (the runtime's own image, its shell wrapper, routine
        execs) contribute an empty name (docs/rules.md, execution flags). A root that exec'd
        another image in place (published without a role: ``bash -c`` running its last command,
        ``curl``, in place) names its own node, for itself: it is no longer the runtime.
        """
        names = []
        for tgid in proc.lineage_tgids[: max_depth + 1]:
            node = self.processes.get(tgid)
            names.append(node.name if node is not None and node.tool
                         and (not node.is_root or (node is proc and node.reimaged)) else "")
        return names

    def lineage_depth(self, proc: ProcessState, max_depth: int) -> int:
        """Emitted nodes - 1 (0 without lineage), as BuildLineage's bounded walk gives it."""
        if not proc.lineage_tgids:
            return max(0, min(proc.depth, max_depth))
        return max(0, min(len(proc.lineage_tgids), max_depth + 1) - 1)


def _opt_int(value: Any) -> int | None:
    """An optional non-negative integer field (None when absent, nil or malformed)."""
    return value if type(value) is int and value >= 0 else None
