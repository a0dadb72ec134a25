"""Which filters apply to one event, given who made it (docs/sessionizer.md "Gates").

``EventScoping._gate`` answers for one tracked event: a drop reason (``str``), nothing to add
(``None``), or the fields to add to it (``dict``: ``hidden``, ``target_tgid``,
``target_in_tree``). It never drops an exec (exec failures and roots are execs.py's business).

* opens: loader noise for any process, on the normalised absolute path, only without write
  intent; ``/proc/<other pid>/...`` is annotated, never noise; runtime noise for ``role: agent``
  processes only, anchored to the root's real directories: a read is dropped, a write into the
  runtime's state is kept with ``hidden: "runtime_noise"`` (the analyzer still matches
  write→exec on it), a write to an rc file or a manifest is published plainly;
* chmod, unlink, rename, truncate: only runtime noise applies (they are all write-like), so they
  are either kept or kept ``hidden``; a rename is runtime noise only when both of its paths are;
* connects: the connect filters (gates.py), then the runtime's own configured endpoints and DNS
  lookups, for ``role: agent`` processes only; sends (UDP): only the latter two, for ``role:
  agent`` processes (a tool's sends, DNS to a loopback resolver included, are all kept);
* ptrace, vm_read: ``target_in_tree``; every other kind passes.
"""

from __future__ import annotations

import pwd
from collections import Counter
from typing import Any, Protocol

from bus.paths import normalise
from bus.text import from_wire
from sessionizer.gates import connect_drop_reason
from sessionizer.noise import LOADER, RUNTIME, UNRESOLVED, RuntimeAnchors, path_key, runtime_anchors, \
    write_intent
from sessionizer.roles import AGENT
from sessionizer.settings import Settings
from sessionizer.tracker import Proc, Root, Tracker

__all__ = ["EventScoping", "EndpointMatcher", "WRITE_KINDS", "passwd_home", "write_key"]

WRITE_KINDS = frozenset(("chmod", "unlink", "rename", "truncate"))
TARGET_KINDS = frozenset(("ptrace", "vm_read"))

Verdict = str | dict[str, Any] | None


class EndpointMatcher(Protocol):
    def matches(self, addr: str, port: int) -> bool: ...


def passwd_home(uid: int | None) -> str | None:
    """The real home of ``uid`` from the password database (not ``$HOME``, which the agent
    sets); None when unknown."""
    if uid is None:
        return None
    try:
        home = pwd.getpwuid(uid).pw_dir
    except (KeyError, OverflowError):
        return None
    return home if home.startswith("/") and home != "/" else None


def _abs_text(raw: Any) -> str | None:
    """A path text, normalised, when it is absolute; None when it is relative or missing."""
    text = raw if type(raw) is str else from_wire(raw) if isinstance(raw, bytes) else ""
    return normalise(text) if text.startswith("/") else None


class EventScoping:
    """The per-kind gates; mixed into the Sessionizer (see the module docstring)."""

    settings: Settings
    tracker: Tracker
    endpoints: EndpointMatcher
    counters: Counter[str]
    _anchors: dict[int, RuntimeAnchors]

    def _gate(self, event: dict[str, Any], kind: str, proc: Proc, root: Root) -> Verdict:
        if kind == "open":
            return self._open_gate(event, proc, root)
        if kind == "connect":
            return self._connect_gate(event, proc, root)
        if kind in WRITE_KINDS:
            return self._write_gate(event, kind, proc, root)
        if kind == "send" and proc.role == AGENT:
            return self._runtime_endpoint(event, root)
        if kind in TARGET_KINDS:
            target = event.get("target")
            return {"target_in_tree": self._in_tree(target, proc)} if type(target) is int else None
        return None

    def _open_gate(self, event: dict[str, Any], proc: Proc, root: Root) -> Verdict:
        raw = event.get("abspath") or event.get("path")      # noise.path_key, inlined (hot)
        return self._open_verdict(event, raw, self.settings.path_facts.fact(raw), proc, root)

    def _open_verdict(self, event: dict[str, Any], raw: Any, fact: Any, proc: Proc,
                      root: Root) -> Verdict:
        """An open's verdict from its path's fact (noise.PathFacts); the core calls this
        itself, after the memo, unless the fact is None for a process without a role."""
        if fact is None:
            return self._runtime_open(event, raw, proc, root) if proc.role == AGENT else None
        if type(fact) is int:                              # /proc/<pid>/...
            if fact == event["tgid"] or fact == event["tid"]:
                return None if write_intent(event.get("flags")) else LOADER
            return {"target_tgid": fact, "target_in_tree": self._in_tree(fact, proc)}
        if fact == LOADER:
            return None if write_intent(event.get("flags")) else LOADER
        if fact == UNRESOLVED:
            self.counters["unresolved_paths"] += 1
            return None
        return fact                                         # MISSING

    def _runtime_open(self, event: dict[str, Any], raw: Any, proc: Proc, root: Root) -> Verdict:
        path = _abs_text(raw)
        if path is None:
            return None
        anchors = self._anchors_for(root)
        if not write_intent(event.get("flags")):
            return RUNTIME if anchors.matches(path) else None
        return {"hidden": RUNTIME} if anchors.state(path) else None

    def _write_gate(self, event: dict[str, Any], kind: str, proc: Proc, root: Root) -> Verdict:
        keys = ("path", "new_path") if kind == "rename" else ("path",)
        paths = [_abs_text(path_key(event, k)) for k in keys]
        if any(p is None for p in paths):
            if any(event.get(k) for k in keys):
                self.counters["unresolved_paths"] += 1
            return None
        if proc.role != AGENT:
            return None
        anchors = self._anchors_for(root)
        if all(anchors.state(p) for p in paths if p is not None):
            return {"hidden": RUNTIME}
        return None

    def _connect_gate(self, event: dict[str, Any], proc: Proc, root: Root) -> Verdict:
        reason = connect_drop_reason(event, self.settings.connect)
        if reason or proc.role != AGENT:
            return reason
        return self._runtime_endpoint(event, root)

    def _runtime_endpoint(self, event: dict[str, Any], root: Root) -> str | None:
        """The runtime's own image talking to its configured endpoints or, for a runtime
        profile, looking names up: a connect, or a UDP send (its resolver queries)."""
        port = int(event.get("port", 0))
        if self.endpoints.matches(str(event.get("addr", "")), port):
            return "configured_connect"
        if port in self.settings.noise.runtime_dns_ports and root.profile in self.settings.runtime_profiles:
            return "runtime_dns"                  # the runtime's own name lookups (docs)
        return None

    def _in_tree(self, target: int, proc: Proc) -> bool:
        other = self.tracker.procs.get(target)
        return other is not None and other.root == proc.root

    def _anchors_for(self, root: Root) -> RuntimeAnchors:
        anchors = self._anchors.get(root.tree_id)
        if anchors is None:
            anchors = runtime_anchors(self.settings.noise, root.uid, root.home, root.install_dir)
            self._anchors[root.tree_id] = anchors
        return anchors


def write_key(event: dict[str, Any], kind: str) -> Any:
    """(kind, path) of a write-like event, for the hidden hold (holding.py); None otherwise."""
    if kind == "open":
        return ("open", path_key(event)) if write_intent(event.get("flags")) else None
    if kind == "rename":
        return ("rename", path_key(event, "new_path"))
    if kind in WRITE_KINDS:
        return (kind, path_key(event))
    return None

