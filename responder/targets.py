"""Which processes a response may signal: the pure core of the responder's safety.

A request (the ``response`` map of an ALERT decision, analyzer/response.py) *claims* a session:
its anchor (the session leader, else the triggering process), the pids the session saw with the time it
first saw each, and the pid that triggered the alert. The bus is CASA's own, but a claim is
still checked against /proc, so that neither a bug upstream nor a forged request can turn the
responder (which holds CAP_KILL) against a process outside the agent's tree:

* never pid 1, pid 0, kernel threads, zombies, or a pid /proc does not show;
* never a CASA process: one whose ancestry holds a protected pid (supervisord, the responder
  itself: every stage descends from supervisord), whose real uid is a protected uid (casa), or
  that is in CASA's own service cgroup (when supervisord has one that pid 1 does not share);
* only processes whose /proc ancestry reaches the anchor (and the agent root, when the request
  names one): a pid of some other tree is refused even if the request lists it;
* a pid the session saw is taken only if its process started no later than the session first
  saw that pid (plus clock slack): otherwise the pid was recycled by an unrelated process;
* the anchor is checked the same way first; a refused anchor refuses the whole request.

Processes the session has not reported yet (children forked a moment ago) are found as /proc
descendants of the accepted ones, so a tree that forks while it is being stopped is still caught
(responder/act.py freezes round after round until no new process appears).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from responder.procfs import ProcInfo, Snapshot

__all__ = ["Request", "RequestError", "Guard", "Selection", "select", "refusal", "SESSION_ACTIONS"]

SESSION_ACTIONS = ("kill_session", "freeze_session")
RECYCLE_SLACK_NS = 500_000_000     # start time vs first sighting: clocks differ by < 10 ms


class RequestError(ValueError):
    """A decision's ``response`` map that cannot be acted on."""


def _int(m: dict[str, Any], key: str) -> int:
    v = m.get(key, 0)
    if type(v) is not int:
        raise RequestError(f"{key} is not an integer")
    return v


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One response to carry out, parsed from an ALERT decision (or rebuilt for a thaw).
    Keywords only: most fields are pids and times, easy to swap by position."""

    session_id: int
    action: str
    dry_run: bool = False
    rules: tuple[str, ...] = ()    # the rules that made the decision (none for a thaw)
    trigger_tgid: int
    # the session leader; when the analyzer does not know it (it joined the session mid-way),
    # the triggering process: never the agent root, which may be a runtime shared by sessions
    anchor: int
    root: int                      # the agent root (0: unknown)
    first_seen: dict[int, int]     # pid -> wall ns the session first saw it
    event_ts_ns: int

    @classmethod
    def from_decision(cls, d: dict[str, Any]) -> "Request":
        r = d.get("response")
        if not isinstance(r, dict):
            raise RequestError("no response map")
        action = r.get("action")
        if action not in ("kill_process", *SESSION_ACTIONS):
            raise RequestError(f"unknown action {action!r}")
        seen: dict[int, int] = {}
        for item in r.get("tgids") or ():
            if (isinstance(item, (list, tuple)) and len(item) == 2
                    and all(type(x) is int for x in item)):
                seen[item[0]] = item[1]
        leader, root = _int(r, "leader_tgid"), _int(r, "root")
        return cls(session_id=_int(d, "session_id"), action=action, dry_run=r.get("dry_run") is True,
                   rules=tuple(str(x) for x in r.get("rules") or ()),
                   trigger_tgid=_int(r, "trigger_tgid"), anchor=leader or _int(r, "trigger_tgid"),
                   root=root,
                   first_seen=seen, event_ts_ns=_int(d, "ts_ns"))


@dataclass(frozen=True, slots=True)
class Guard:
    """What is never touched, whatever a request says."""

    protected_pids: frozenset[int]     # they and every process below them are CASA's
    protected_uids: frozenset[int]     # CASA's own user
    slack_ns: int = RECYCLE_SLACK_NS
    # CASA's service cgroup, when it has one of its own (not pid 1's): under systemd every
    # process of the casa service, even one that left supervisord's tree, is in it
    protected_cgroup: str | None = None


@dataclass(slots=True)
class Selection:
    targets: list[ProcInfo] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    gone: int = 0                       # listed pids that have exited (normal, not a refusal)


def refusal(pid: int, snap: Snapshot, guard: Guard, req: Request,
            first_seen: int | None) -> str | None:
    """Why ``pid`` must not be signalled for ``req``; None when it may be."""
    if pid <= 1:
        return "pid 1 or invalid"
    info = snap.get(pid)
    if info is None:
        return "gone"
    if pid == 2 or info.ppid == 2:
        return "kernel thread"
    if info.state in ("Z", "X"):
        return "gone"
    chain = snap.ancestry(pid)
    if guard.protected_pids.intersection(chain):
        return "CASA process"
    if snap.uid(pid) in guard.protected_uids:
        return "CASA user"
    if guard.protected_cgroup is not None and snap.cgroup(pid) == guard.protected_cgroup:
        return "CASA cgroup"
    if req.anchor <= 1 or req.anchor not in chain:
        return "outside the session tree"
    if req.root > 1 and req.root not in chain:
        return "outside the agent tree"
    if first_seen is not None and info.start_wall_ns(snap.boot_ns) > first_seen + guard.slack_ns:
        return "recycled pid (started after the session saw it)"
    return None


def select(req: Request, snap: Snapshot, guard: Guard, descendants: bool = True) -> Selection:
    """The processes ``req`` may signal now, and why each other named pid is refused.

    ``descendants`` (session actions, full snapshots): add the unreported children too."""
    out = Selection()
    why = refusal(req.anchor, snap, guard, req, req.first_seen.get(req.anchor))
    if why is not None and why != "gone":
        out.refused.append((req.anchor, f"anchor: {why}"))
        return out
    if req.action == "kill_process":
        candidates = [req.trigger_tgid]
        if req.trigger_tgid not in req.first_seen:
            out.refused.append((req.trigger_tgid, "not a process of the session"))
            return out
    else:
        candidates = list(req.first_seen)
        if why is None and req.anchor not in req.first_seen:
            candidates.insert(0, req.anchor)
    taken: dict[int, ProcInfo] = {}
    for pid in candidates:
        reason = refusal(pid, snap, guard, req, req.first_seen.get(pid))
        if reason == "gone":
            out.gone += 1
        elif reason is not None:
            out.refused.append((pid, reason))
        else:
            taken[pid] = snap.procs[pid]
    if descendants and req.action in SESSION_ACTIONS:
        _add_descendants(taken, snap, guard, req, out)
    out.targets = list(taken.values())
    return out


def _add_descendants(taken: dict[int, ProcInfo], snap: Snapshot, guard: Guard, req: Request,
                     out: Selection) -> None:
    """Children the session has not reported yet: below an accepted process, checked alike."""
    for pid in list(taken):
        for child in snap.descendants(pid):
            if child in taken:
                continue
            reason = refusal(child, snap, guard, req, None)
            if reason is None:
                taken[child] = snap.procs[child]
            elif reason != "gone":
                out.refused.append((child, reason))
