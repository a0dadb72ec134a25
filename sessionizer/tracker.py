"""The process tracker: which processes belong to an agent tree, their depth and their root.

Semantics of the original (docs/original.md §4), adapted to several roots of several profiles:

* A **root** (depth 0) is a process matched by an agent profile: announced by the collector's
  ``root`` event (bootstrap scan or exec) or matched here on its exec.
* **Propagate** on every successful exec: if the parent is tracked, the process is tracked with
  ``depth = parent.depth + 1``, or the parent's depth when the exec is *transparent* (a routine
  exec or a runtime shell wrapper from a system directory, roles.py). An exec whose parent is
  untracked is ignored, unless the process itself is tracked (an exec in place, e.g.
  ``bash -c cmd`` becoming ``cmd``).
* **Fork** (``fork`` events, not in the original): the child is tracked with the parent's depth,
  image and role, so a forked worker that never execs keeps its parent's depth (the original
  reached such processes through its one-hop ``ppid`` check, with the parent's depth).
* **Membership**: an event belongs to a tree if its tgid or its ppid is tracked.
* **Removal** on a process exit (exit events are whole-process).

Each entry remembers the post-exec name (basename of the exec path) for lineage, its role, and
whether it is a shell from a system directory (``shell``: the only kind of shell that makes a
later shell "not the wrapper"). The walk up the tree is bounded (``MAX_WALK``) so a corrupted
table cannot loop.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

__all__ = ["Proc", "Root", "Tracker", "MAX_WALK"]

MAX_WALK = 256


@dataclass(slots=True)
class Proc:
    """One tracked process (a kernel tgid)."""

    tgid: int
    ppid: int
    depth: int
    root: int                 # tgid of the root this process descends from
    comm: str                 # post-exec name: basename of the exec path, else the task comm
    transparent: bool = False  # skipped in lineage, not counted in depth (wrapper / routine exec)
    role: str | None = None   # "agent" | "wrapper" | "routine" (roles.py); published on its events
    shell: bool = False       # a shell from a root-owned system directory (for shell_above)
    runtime_image: bool = False  # runs the root's executable (the runtime's own binary)
    is_root: bool = False
    foreign: bool = False     # a root (or a fork of one) whose image left its profile: a payload
                              # exec'd in place, no longer the runtime's own background


@dataclass(slots=True)
class Root:
    """A tracked root: the profile it matched, when it was seen, and its (real) uid: a runtime
    tree's events join only CLI sessions of that user (None: from an older checkpoint).

    ``tree_id`` is allocated by the sessionizer from its own reserved sequence (never a tgid,
    which the kernel reuses; never reused itself); ``shard`` routes the tree's sessions to one analyzer
    (trees.py). ``exe``/``exe_ino``/``exe_dev`` identify the runtime's executable and
    ``install_dir`` its installation (roles.py); ``home`` is the real home of ``uid`` (passwd);
    ``cap_eff`` its CapEff when known; ``bootstrap_ns`` when it was found by the collector's
    /proc scan (its beginning never seen); ``last_session`` the session that last took an event
    of the tree (the parent of its next session, trees.py)."""

    tgid: int
    profile: str
    seen_ns: int
    uid: int | None = None
    tree_id: int = 0
    shard: int = 0
    exe: str = ""
    exe_ino: int | None = None
    exe_dev: int | None = None
    install_dir: str | None = None
    home: str | None = None
    cap_eff: int | None = None
    bootstrap_ns: int | None = None
    last_session: int | None = None

    @property
    def exe_id(self) -> tuple[int, int] | None:
        if self.exe_ino is None or self.exe_dev is None:
            return None
        return (self.exe_ino, self.exe_dev)


_PROC_FIELDS = tuple(f.name for f in fields(Proc))
_ROOT_FIELDS = tuple(f.name for f in fields(Root))


def _flat(obj: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """What ``dataclasses.asdict`` gives for a record of scalars, without its deep copy (the
    checkpoint of a busy tracker holds thousands of them)."""
    return {n: getattr(obj, n) for n in names}


class Tracker:
    """tgid -> Proc, plus the roots. Pure and synchronous."""

    def __init__(self) -> None:
        self.procs: dict[int, Proc] = {}
        self.roots: dict[int, Root] = {}

    def __len__(self) -> int:
        return len(self.procs)

    def get(self, tgid: int) -> Proc | None:
        return self.procs.get(tgid)

    def exists(self, tgid: int) -> bool:
        return tgid in self.procs

    def member(self, tgid: int, ppid: int) -> bool:
        """The membership gate: the process or its parent is tracked."""
        return tgid in self.procs or ppid in self.procs

    def add_root(self, tgid: int, ppid: int, comm: str, root: Root) -> Proc:
        """Track ``tgid`` as a depth-0 root (role agent) described by ``root``."""
        proc = Proc(tgid=tgid, ppid=ppid, depth=0, root=tgid, comm=comm, role="agent",
                    runtime_image=True, is_root=True)
        self.procs[tgid] = proc
        self.roots[tgid] = root
        return proc

    def on_fork(self, parent: int, child: int) -> Proc | None:
        """A tracked parent forked: the child shares its image, depth, role and root."""
        p = self.procs.get(parent)
        if p is None:
            return None
        proc = Proc(tgid=child, ppid=parent, depth=p.depth, root=p.root, comm=p.comm,
                    transparent=p.transparent and not p.is_root, role=p.role, shell=p.shell,
                    runtime_image=p.runtime_image, foreign=p.foreign)
        self.procs[child] = proc
        return proc

    def on_exec(self, tgid: int, ppid: int, comm: str, *, transparent: bool = False,
                role: str | None = None, shell: bool = False,
                runtime_image: bool = False) -> Proc | None:
        """Propagate one successful exec; None if the process is outside every tree."""
        parent = self.procs.get(ppid)
        current = self.procs.get(tgid)
        if current is not None and current.is_root:
            current.comm = comm            # a root re-execs itself (env -> node): still the root
            return current
        if parent is not None:
            depth = parent.depth if transparent else parent.depth + 1
            root = parent.root
        elif current is not None:          # exec in place; the parent is gone or untracked
            base = current.depth - (0 if current.transparent else 1)
            depth = base if transparent else base + 1
            root = current.root
        else:
            return None
        proc = Proc(tgid=tgid, ppid=ppid, depth=max(depth, 0), root=root, comm=comm,
                    transparent=transparent, role=role, shell=shell, runtime_image=runtime_image)
        self.procs[tgid] = proc
        return proc

    def adopt(self, tgid: int, ppid: int, root: int, comm: str) -> Proc:
        """Track a process known only to descend from ``root`` (depth: one below its tracked
        parent, else 1, since it is not the root itself)."""
        parent = self.procs.get(ppid)
        depth = parent.depth + 1 if parent is not None else 1
        proc = Proc(tgid=tgid, ppid=ppid, depth=depth, root=root, comm=comm)
        self.procs[tgid] = proc
        return proc

    def remove(self, tgid: int) -> Proc | None:
        """A process exited: forget it (its root record stays while descendants may refer to it)."""
        return self.procs.pop(tgid, None)

    def depth_of(self, tgid: int, ppid: int) -> int | None:
        """Depth of the process; for an untracked one, its parent's (same image, never exec'd)."""
        proc = self.procs.get(tgid) or self.procs.get(ppid)
        return proc.depth if proc is not None else None

    def foreign(self, tgid: int, ppid: int) -> bool:
        """Does the process (for an untracked one, its parent) run an image foreign to its
        root's profile after the root exec'd in place?"""
        proc = self.procs.get(tgid) or self.procs.get(ppid)
        return proc is not None and proc.foreign

    def root_of(self, tgid: int, ppid: int) -> Root | None:
        proc = self.procs.get(tgid) or self.procs.get(ppid)
        return self.roots.get(proc.root) if proc is not None else None

    def shell_above(self, ppid: int, shell_names: frozenset[str]) -> bool:
        """Is any tracked non-root ancestor, starting at ``ppid``, a shell? A shell from a
        system directory, or anything named like one: this answer can only take the wrapper
        role away from the shell below, so a name here makes CASA see more, never less."""
        proc = self.procs.get(ppid)
        for _ in range(MAX_WALK):
            if proc is None or proc.is_root:
                return False
            if proc.shell or proc.comm in shell_names:
                return True
            proc = self.procs.get(proc.ppid)
        return False

    def prune_roots(self) -> int:
        """Drop root records no tracked process refers to any more; return how many."""
        used = {p.root for p in self.procs.values()}
        stale = [t for t in self.roots if t not in used]
        for t in stale:
            del self.roots[t]
        return len(stale)

    def to_state(self) -> dict[str, Any]:
        """A JSON-able copy (checkpoint)."""
        return {"procs": [_flat(p, _PROC_FIELDS) for p in self.procs.values()],
                "roots": [_flat(r, _ROOT_FIELDS) for r in self.roots.values()]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "Tracker":
        t = cls()
        for raw in state.get("procs", []):
            p = Proc(**_current_proc(raw))
            t.procs[p.tgid] = p
        for raw in state.get("roots", []):
            r = Root(**raw)
            t.roots[r.tgid] = r
        return t


_LEGACY_SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "fish"})


def _current_proc(raw: dict[str, Any]) -> dict[str, Any]:
    """A process record of a checkpoint written before roles: ``wrapper``/``routine`` flags
    become the role, and a shell is recognised by name as it was then."""
    if "role" in raw:
        return raw
    d = dict(raw)
    wrapper, routine = d.pop("wrapper", False), d.pop("routine", False)
    d["role"] = "wrapper" if wrapper else "routine" if routine else (
        "agent" if d.get("is_root") and not d.get("foreign") else None)
    d.setdefault("shell", d.get("comm") in _LEGACY_SHELLS)
    return d
