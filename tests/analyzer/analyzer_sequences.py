"""Builders for sessionizer.event sequences, as the sessionizer would publish them (test input)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzer.core import Analyzer
from policy import Policy, load_policy, parse_policy

CHECKOUT = Path(__file__).resolve().parents[2]
ORIGINAL_RULES = CHECKOUT / "config" / "rules.original.json"
S = 1_000_000_000
GATEWAY = 100


@dataclass
class Seq:
    """Appends events of one session; ``t`` is seconds since the session's start."""

    session_id: int = 1
    events: list[dict[str, Any]] = field(default_factory=list)
    parents: dict[int, int] = field(default_factory=dict)     # tgid -> ppid (lineage)
    comms: dict[int, str] = field(default_factory=dict)
    uid: int = 1000
    hidden: set[int] = field(default_factory=set)     # transparent wrappers: not in lineage
    common: dict[str, Any] = field(default_factory=dict)   # added to every event (tree_id, shard)

    def _base(self, kind: str, t: float, tgid: int) -> dict[str, Any]:
        return {"kind": kind, "ts_ns": int(t * S), "tgid": tgid, "tid": tgid,
                "ppid": self.parents.get(tgid, GATEWAY), "uid": self.uid,
                "comm": self.comms.get(tgid, "node"), "root": GATEWAY,
                "session_id": self.session_id, "profile": "openclaw-cli", "depth": 0, **self.common}

    def exec(self, t: float, tgid: int, path: str, argv: list[str] | None = None, *,
             parent: int = GATEWAY, exe: str | None = None, cap_eff: int | None = 0,
             seccomp: int | None = 2, **extra: Any) -> "Seq":
        self.parents[tgid] = parent
        ev = self._base("exec", t, tgid)
        if tgid not in self.comms:          # a fresh fork still carries its parent's comm
            ev["comm"] = self.comms.get(parent, "node")
        self.comms[tgid] = path.rsplit("/", 1)[-1][:15]
        lineage, cur, seen = [], tgid, set()
        while cur in self.parents and cur not in seen:
            seen.add(cur)
            if cur not in self.hidden:
                lineage.append({"tgid": cur, "ppid": self.parents[cur],
                                "comm": self.comms.get(cur, "")})
            cur = self.parents[cur]
        lineage.append({"tgid": GATEWAY, "ppid": 1, "comm": "openclaw-gatewa"})
        ev.update(syscall="execve", path=path, argv=argv or [path], argv_truncated=False, ret=0,
                  exe=exe if exe is not None else path, dirfd=-100, flags=0, cap_eff=cap_eff,
                  seccomp=seccomp, lineage=lineage, depth=len(lineage) - 1, **extra)
        self.events.append(ev)
        return self

    def open(self, t: float, tgid: int, path: str, flags: int = 0, **extra: Any) -> "Seq":
        ev = self._base("open", t, tgid)
        ev.update(syscall="openat", path=path, flags=flags, mode=0o644 if flags & 0x40 else 0, ret=3)
        ev.update(extra)
        self.events.append(ev)
        return self

    def write(self, t: float, tgid: int, path: str, **extra: Any) -> "Seq":
        return self.open(t, tgid, path, 0x241, **extra)          # O_WRONLY|O_CREAT|O_TRUNC

    def connect(self, t: float, tgid: int, addr: str, port: int, **extra: Any) -> "Seq":
        ev = self._base("connect", t, tgid)
        ev.update(family=10 if ":" in addr else 2, addr=addr, port=port, ret=0, **extra)
        self.events.append(ev)
        return self

    def exit(self, t: float, tgid: int, code: int = 0, **extra: Any) -> "Seq":
        ev = self._base("exit", t, tgid)
        ev["exit_code"] = code
        ev.update(extra)
        self.events.append(ev)
        return self

    def event(self, kind: str, t: float, tgid: int, **fields: Any) -> "Seq":
        """Any other kind (schema 2: rename, unlink, truncate, chmod, ...)."""
        ev = self._base(kind, t, tgid)
        ev.update(fields)
        self.events.append(ev)
        return self


def readme_example(sid: int = 25) -> Seq:
    """The README's write -> exec: bash writes /tmp/openclaw-eval/helper.sh, a child runs it."""
    s = Seq(session_id=sid)
    s.exec(1, 200, "/bin/bash", ["bash", "-c", "cat > helper.sh"])
    s.write(2, 200, "/tmp/openclaw-eval/helper.sh")
    s.exec(3, 201, "/tmp/openclaw-eval/helper.sh", parent=200)
    return s


def lifecycle(session_id: int, state: str, **over: Any) -> dict[str, Any]:
    m = {"kind": "session", "state": state, "session_id": session_id, "profile": "openclaw-cli",
         "leader_tgid": 50, "created_ns": 0, "updated_ns": 0,
         "closed_ns": 10 * S if state == "closed" else None, "complete": True, "lost_events": 0}
    m.update(over)
    return m


def run_events(core: Analyzer, events: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for ev in events:
        out.extend(core.handle(("sessionizer.event", ev), 0))
    return out


def decisions(out: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [m for topic, m in out if topic == "analyzer.decision"]


def context_after(core: Analyzer, seq: Seq) -> Any:
    """Feed ``seq`` to ``core``; return the session's derived Context."""
    run_events(core, seq.events)
    return core.sessions[seq.session_id].ctx


def hist(core: Analyzer, seq: Seq) -> Any:
    """The session's history.* flags after ``seq``."""
    return context_after(core, seq).history


def ex(core: Analyzer, seq: Seq) -> Any:
    """The session's execution.* flags after ``seq``."""
    return context_after(core, seq).execution


def in_mode(policy: Policy, mode: str) -> Policy:
    """``policy`` with ``analysis.history_mode`` set to ``mode``."""
    return dataclasses.replace(policy, analysis=dataclasses.replace(policy.analysis, history_mode=mode))


def indexed_policy(rules_file: Path) -> Policy:
    """The rules file in the default ``"indexed"`` history mode, whatever mode the file names
    (config/rules.eval.json is the original pack and runs in ``"original"`` mode)."""
    return in_mode(load_policy(rules_file), "indexed")


def parity_policy(rules_file: Path) -> Policy:
    """The analysis values of ``rules_file`` (e.g. the evaluation's fake fs and loopback ports)
    with the exact rules, thresholds and history mode of config/rules.original.json: what the
    original CASA would have run with those values."""
    doc = json.loads(rules_file.read_text())
    original = json.loads(ORIGINAL_RULES.read_text())
    doc["analysis"]["history_mode"] = original["analysis"]["history_mode"]
    doc["rules"], doc["thresholds"] = original["rules"], original["thresholds"]
    return parse_policy(json.dumps(doc).encode(), f"{rules_file.name}+rules.original.json")
