"""What an exec (or the collector's ``root`` event) does to the trees: roots, re-execs, roles.

* An exec **outside** every tree that matches a profile registers a root (an invocation root
  opens its session); its exec is not published (``dropped_root_exec``: the ``opened`` message
  represents it).
* An exec **inside** a tree never becomes a root, never opens a session and never redirects the
  tree's events, whatever it is called and whatever its arguments (issue 11 item 6: a tool
  starting a fake ``openclaw agent -m hi`` under a gateway). It is a process of the tree, with a
  role or without (roles.py); one that matches a profile is counted (``nested_profile_exec``).
  A ``root`` event the collector sends for such a process is ignored (``dropped_nested_root``).
* A root that execs in place stays its tree's root: its own profile's image again (``env`` ->
  ``node``) is not published (``dropped_root_exec``); any other image is published and the
  process loses the ``agent`` role (``root_reimaged``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from bus.text import from_wire
from sessionizer.anchors import in_dirs
from sessionizer.gates import ENOENT, routine_exec
from sessionizer.roles import AGENT, ROUTINE, WRAPPER, ExecFacts, exec_facts, install_dir, \
    is_wrapper_argv, same_image, script_argument
from sessionizer.sessions import Origin, Session, SessionIds, SessionTable
from sessionizer.settings import Settings
from sessionizer.tracker import Proc, Root, Tracker
from sessionizer.trees import invocation_shard

__all__ = ["ExecHandling", "Classified"]

Out = tuple[str, dict[str, Any]]
Classified = tuple[str | None, bool, bool, bool]   # role, transparent, shell, runtime image

log = logging.getLogger("casa.sessionizer")


def _int_or_none(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None


class ExecHandling:
    """Exec and root lifecycle; mixed into the Sessionizer (see the module docstring)."""

    settings: Settings
    tracker: Tracker
    sessions: SessionTable
    tree_ids: SessionIds
    counters: Counter[str]
    dropped: Counter[str]
    structure_changed: bool
    _home_of: Callable[[int | None], str | None]

    def _opened(self, s: Session, ts: int) -> Out: ...            # core.py
    def _mark_bootstrap(self, s: Session, root: Root) -> None: ...   # core.py

    def _exec_lifecycle(self, event: dict[str, Any], ts: int) -> tuple[list[Out], str | None]:
        """Tracker and root updates for an exec; returns (lifecycle outputs, drop reason)."""
        ret = event.get("ret", 0)
        if ret != 0:
            return [], ("exec_not_found" if ret == -ENOENT else None)
        tgid, ppid = event["tgid"], event["ppid"]
        facts = exec_facts(event)
        if not facts.resolved and not facts.fd_exec:
            self.counters["unresolved_paths"] += 1           # no shortcut can vouch for it
        procs = self.tracker.procs
        current = procs.get(tgid)
        if current is not None and current.is_root:
            return [], self._root_reexec(current, facts, event)
        if current is None and ppid not in procs:
            return self._maybe_root(event, facts, ts)
        role, transparent, shell, image = self._classify(facts, current, ppid)
        self.tracker.on_exec(tgid, ppid, facts.name, transparent=transparent, role=role,
                             shell=shell, runtime_image=image)
        return [], None

    def _maybe_root(self, event: dict[str, Any], facts: ExecFacts,
                    ts: int) -> tuple[list[Out], str | None]:
        """An exec outside every tree: a new root if a profile matches (else untracked)."""
        for profile in self.settings.profiles:
            if profile.matches(facts.name[:15], facts.image, facts.argv):
                root = self._make_root(event["tgid"], profile.name, ts, event["uid"], facts.image,
                                       facts.exe_id, facts.argv, event.get("cap_eff"), False)
                return self._register_root(event["tgid"], event["ppid"], facts.name, root), "root_exec"
        return [], None

    def _classify(self, facts: ExecFacts, current: Proc | None, ppid: int) -> Classified:
        """The role of an exec inside a tree (roles.py), whether it is transparent, a system
        shell, and the root's executable. ``current``: the process's entry before the exec (a
        fork child inherits its parent's), else its parent's: what spawned this image."""
        s = self.settings
        system = facts.resolved and in_dirs(facts.image, s.system_dirs)
        shell = system and facts.name in s.shell_names
        spawner = current if current is not None else self.tracker.procs.get(ppid)
        root = self.tracker.roots.get(spawner.root) if spawner is not None else None
        image = root is not None and same_image(facts, root.exe, root.exe_id)
        if image and spawner is not None and spawner.role == AGENT and self._runtime_script(facts, root):
            return AGENT, False, False, True
        if self._nested_profile(facts):
            self.counters["nested_profile_exec"] += 1
        # the wrapper, spawned by the runtime's own image; or the wrapper replacing itself in
        # place with another system shell -c (OpenClaw's spawn broker runs
        # `/bin/sh -c '...; exec "$0" "$@"' /usr/bin/sh -c '<cmd>'`)
        if shell and s.shell_wrappers and is_wrapper_argv(facts.argv) and spawner is not None \
                and (spawner.role == AGENT or spawner.runtime_image or spawner.role == WRAPPER) \
                and not self.tracker.shell_above(ppid, s.shell_names):
            return WRAPPER, True, True, False
        if system and routine_exec(facts.image, facts.argv, s.noise, s.system_dirs):
            return ROUTINE, True, shell, image
        return None, False, shell, image

    def _runtime_script(self, facts: ExecFacts, root: Root | None) -> bool:
        """An exec of the root's executable that matches the root's profile or runs a script
        inside the root's install directory."""
        if root is None:
            return False
        profile = self.settings.profile(root.profile)
        if profile is not None and profile.matches(facts.name[:15], facts.image, facts.argv):
            return True
        script = script_argument(facts.argv)
        return bool(root.install_dir and script and script.startswith(root.install_dir + "/"))

    def _nested_profile(self, facts: ExecFacts) -> bool:
        return any(p.matches(facts.name[:15], facts.image, facts.argv) for p in self.settings.profiles)

    def _root_reexec(self, proc: Proc, facts: ExecFacts, event: dict[str, Any]) -> str | None:
        """A root execs a new image in place. Still its profile's image (``#!/usr/bin/env node``:
        the script, then ``node <script>``): the same agent, nothing to publish. Anything else (a
        payload in /tmp, a memfd, ``bash -c`` running its last command in place) is published
        like any exec of the session, and from now on the process is no longer the runtime
        itself (``Proc.foreign``, no role). The process stays its tree's root either way."""
        proc.comm = facts.name
        root = self.tracker.roots.get(proc.root)
        profile = self.settings.profile(root.profile) if root is not None else None
        if root is not None and profile is not None and not proc.foreign \
                and profile.matches(facts.name[:15], facts.image, facts.argv):
            self._refresh_root(root, facts, event)                 # env -> node
            return "root_exec"
        proc.foreign, proc.role, proc.runtime_image = True, None, False
        event["reimaged"] = True           # the analyzer: this root now names its own node
        self.counters["root_reimaged"] += 1
        log.info("agent root exec'd an image its profile does not match; published "
                 "| tgid=%d profile=%s comm=%r", proc.tgid, root.profile if root else "?", facts.name)
        return None

    def _refresh_root(self, root: Root, facts: ExecFacts, event: dict[str, Any]) -> None:
        """The root's own re-exec: its executable (and install directory) are the new image's."""
        root.exe = facts.image if facts.resolved else root.exe
        root.exe_ino, root.exe_dev = facts.exe_id if facts.exe_id else (None, None)
        names = self._script_names(root.profile)
        found = install_dir(script_argument(facts.argv, names), root.home, self.settings.system_dirs)
        root.install_dir = found or root.install_dir
        root.cap_eff = _int_or_none(event.get("cap_eff")) if "cap_eff" in event else root.cap_eff

    def _root_event(self, event: dict[str, Any]) -> list[Out]:
        """The collector names a root (bootstrap scan, or an exec it matched)."""
        profile = self.settings.profile(str(event.get("profile", "")))
        if profile is None:
            self.dropped["unknown_profile"] += 1
            log.warning("root event names a profile that is not configured; ignored "
                        "| profile=%r tgid=%s", event.get("profile"), event.get("tgid"))
            return []
        tgid, procs = event["tgid"], self.tracker.procs
        current = procs.get(tgid)
        if current is not None and current.is_root:
            root = self.tracker.roots.get(tgid)
            if root is not None and root.cap_eff is None:
                root.cap_eff = _int_or_none(event.get("cap_eff"))
            return []                                # already known (we matched its exec)
        if current is not None or event["ppid"] in procs:
            self.dropped["nested_root"] += 1         # inside a tree: never a root (docs)
            return []
        exe = _wire_text(event.get("exe"))
        argv = [_wire_text(a) for a in event.get("argv") or []]
        name = exe.rsplit("/", 1)[-1] or _wire_text(event.get("comm"))
        root = self._make_root(tgid, profile.name, event["ts_ns"], event["uid"], exe, None, argv,
                               event.get("cap_eff"), event.get("reason") == "bootstrap")
        return self._register_root(tgid, event["ppid"], name, root)

    def _script_names(self, profile_name: str) -> tuple[str, ...]:
        profile = self.settings.profile(profile_name)
        return tuple(n for m in profile.match for n in m.argv_basename_any) if profile else ()

    def _make_root(self, tgid: int, profile_name: str, ts: int, uid: int, exe: str,
                   exe_id: tuple[int, int] | None, argv: list[str], cap_eff: Any,
                   bootstrap: bool) -> Root:
        """A new Root with its tree id, shard, home and install directory."""
        home = self._home_of(uid)
        script = script_argument(argv, self._script_names(profile_name))
        tree_id = self.tree_ids.allocate()
        if profile_name in self.settings.runtime_profiles:
            shard = tree_id
        else:
            shard = invocation_shard(self.tracker.roots.values(), self.settings.runtime_profiles,
                                     uid, tree_id)
        ino, dev = exe_id if exe_id else (None, None)
        return Root(tgid, profile_name, ts, uid, tree_id=tree_id, shard=shard, exe=exe,
                    exe_ino=ino, exe_dev=dev, home=home,
                    install_dir=install_dir(script, home, self.settings.system_dirs),
                    cap_eff=_int_or_none(cap_eff), bootstrap_ns=ts if bootstrap else None)

    def _register_root(self, tgid: int, ppid: int, name: str, root: Root) -> list[Out]:
        """Track a new root; an invocation root opens its session."""
        profile = self.settings.profile(root.profile)
        assert profile is not None
        self.tracker.add_root(tgid, ppid, name, root)
        self.counters["roots"] += 1
        self.structure_changed = True
        log.info("agent root | tgid=%d profile=%s kind=%s comm=%r tree_id=%d shard=%d install_dir=%s",
                 tgid, root.profile, profile.kind, name, root.tree_id, root.shard, root.install_dir)
        if profile.kind != "invocation":
            return []
        s = self.sessions.open(profile=root.profile, origin=Origin.INVOCATION, tree_root=tgid,
                               leader_tgid=tgid, ts_ns=root.seen_ns, idle_gap_s=profile.idle_gap_s,
                               close_grace_s=profile.close_grace_s, leader_uid=root.uid,
                               tree_id=root.tree_id, shard=root.shard, root_uid=root.uid,
                               root_cap_eff=root.cap_eff)
        self._mark_bootstrap(s, root)
        return [self._opened(s, root.seen_ns)]


def _wire_text(value: Any) -> str:
    if type(value) is str:
        return value
    return from_wire(value) if isinstance(value, bytes) else ""
