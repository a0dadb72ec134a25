"""The agent roots CASA watches, for `casa status`: read from the sessionizer's roots file
(sessionizer/roots_file.py, ``$CASA_BUS_DIR/sessionizer.roots.json``).

A root is an agent process a profile of config/casa.json matched (the OpenClaw gateway, an
``openclaw agent`` invocation); everything it starts is watched. No root means CASA watches no
agent at all, which a person must be told plainly rather than infer from an empty log.
"""

from __future__ import annotations

import json
import pwd
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli.terminal import safe

__all__ = ["RootsView", "read_roots", "render_roots", "FILE_NAME"]

FILE_NAME = "sessionizer.roots.json"
NO_ROOT_HINT = ("no agent root is tracked: CASA is not watching any agent. Start your agent "
                "(OpenClaw's gateway or `openclaw agent ...`); if it runs already, check its "
                "process against the profiles in config/casa.json (README, \"Monitor your own OpenClaw\")")


@dataclass(slots=True)
class RootsView:
    roots: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0
    written_ns: int | None = None
    sessionizer_pid: int | None = None
    warning: str = ""               # "" when the list can be trusted and is not empty

    def to_json(self) -> dict[str, Any]:
        return {"agent_roots": self.roots, "agent_roots_total": self.total,
                "agent_roots_written_ns": self.written_ns, "agent_roots_warning": self.warning}


def _user(uid: Any) -> str:
    if type(uid) is not int:
        return "?"
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def read_roots(bus_dir: Path, heartbeat_pid: int | None) -> RootsView:
    """The roots file, checked against the running sessionizer (its heartbeat's ``pid``): a file
    left by a sessionizer that is gone says nothing about now."""
    path = bus_dir / FILE_NAME
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return RootsView(warning=f"the sessionizer has not published its roots ({path} missing): "
                                 "is it running?")
    except (OSError, ValueError) as exc:
        return RootsView(warning=f"cannot read {path}: {exc}")
    if not isinstance(doc, dict) or not isinstance(doc.get("roots"), list):
        return RootsView(warning=f"{path} is not a roots file")
    view = RootsView([r for r in doc["roots"] if isinstance(r, dict)],
                     doc.get("roots_total") if type(doc.get("roots_total")) is int else len(doc["roots"]),
                     doc.get("written_ns"), doc.get("sessionizer_pid"))
    for r in view.roots:
        r["user"] = _user(r.get("uid"))
    if heartbeat_pid and view.sessionizer_pid != heartbeat_pid:
        view.warning = (f"the roots file is from sessionizer pid {view.sessionizer_pid}, but pid "
                        f"{heartbeat_pid} is running: it has not written its own yet")
    elif not view.roots:
        view.warning = NO_ROOT_HINT
    return view


def _since(ns: Any) -> str:
    if type(ns) is not int:
        return "-"
    return time.strftime("%m-%d %H:%M:%S", time.localtime(ns // 1_000_000_000))


def render_roots(view: RootsView) -> list[str]:
    lines = ["", f"AGENT ROOTS watched: {view.total}"]
    if view.roots:
        lines.append(f"{'PROFILE':<17}{'PID':>8}  {'USER':<10}{'SINCE':<15}{'SESSIONS':>8}  EXECUTABLE")
        for r in view.roots:
            found = " (found running at start)" if r.get("bootstrap") else ""
            lines.append(f"{safe(r.get('profile', '?')):<17}{safe(r.get('tgid', '?')):>8}  "
                         f"{safe(r['user']):<10}{_since(r.get('since_ns')):<15}"
                         f"{safe(r.get('open_sessions', 0)):>8}  {safe(r.get('exe') or '-')}{found}")
        if view.total > len(view.roots):
            lines.append(f"... and {view.total - len(view.roots)} more")
    if view.warning:
        lines.append(f"WARNING: {safe(view.warning)}")
    return lines
