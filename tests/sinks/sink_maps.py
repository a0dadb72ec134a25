"""Analyzer-shaped bus maps for the sink tests (README alert example, sessions, events)."""

from __future__ import annotations

from typing import Any

# 2026-05-02T17:44:19.027509477-05:00, the README's alert timestamp (America/Chicago, CDT).
README_ALERT_TS_NS = 1777761859_027509477


def exec_event(**over: Any) -> dict[str, Any]:
    """An analyzer.event exec map as the sessionizer tags it."""
    ev: dict[str, Any] = {
        "kind": "exec", "ts_ns": README_ALERT_TS_NS, "tgid": 4242, "tid": 4242, "ppid": 4200,
        "uid": 1000, "comm": "bash", "root": 4000, "syscall": "execve",
        "path": "/tmp/openclaw-eval/helper.sh", "argv": ["/tmp/openclaw-eval/helper.sh"],
        "argv_truncated": False, "ret": 0, "exe": "/tmp/openclaw-eval/helper.sh", "dirfd": -100,
        "flags": 0, "cap_eff": 0, "seccomp": 0, "session_id": 25, "profile": "openclaw",
        "depth": 2, "lineage": [{"tgid": 4242, "ppid": 4200, "comm": "bash"},
                                {"tgid": 4200, "ppid": 4000, "comm": "node"},
                                {"tgid": 4000, "ppid": 1, "comm": "openclaw-gatewa"}],
    }
    ev.update(over)
    return ev


def readme_decision(**over: Any) -> dict[str, Any]:
    """The README's alert: bash execs /tmp/openclaw-eval/helper.sh; 5 + 4 = 9 reaches ALERT."""
    d: dict[str, Any] = {
        "kind": "decision", "session_id": 25, "ts_ns": README_ALERT_TS_NS, "event": exec_event(),
        "action": "ALERT", "score": 9, "increment": 9, "log_threshold": 4, "alert_threshold": 9,
        "triggered_rules": [
            {"name": "write_then_exec_same_path", "expr": "history.write_then_exec_same_path",
             "weight": 5},
            {"name": "write_then_exec_from_suspicious_path",
             "expr": "history.write_then_exec_same_path && execution.suspicious_path_exec",
             "weight": 4}],
        "context": {"execution": {"suspicious_path_exec": True, "shell_in_chain": True},
                    "capability": {"has_dangerous_caps": False, "dangerous_count": 0,
                                   "seccomp_disabled": True},
                    "history": {"write_then_exec_same_path": True, "burst_exec": False}},
        "rules_version": "0123456789ab",
    }
    d.update(over)
    return d


def session_map(state: str, **over: Any) -> dict[str, Any]:
    """An analyzer.session lifecycle map."""
    s: dict[str, Any] = {
        "kind": "session", "state": state, "session_id": 25, "profile": "openclaw",
        "leader_tgid": 4100, "created_ns": README_ALERT_TS_NS - 2_000_000_000,
        "updated_ns": README_ALERT_TS_NS, "closed_ns": None, "complete": True, "lost_events": 0,
        "recent_events": [], "score": 9, "action": "ALERT",
        "triggered_rules": ["write_then_exec_same_path"], "context": {}, "rules_version": "0123456789ab",
    }
    s.update(over)
    return s


T0 = README_ALERT_TS_NS - 4_000_000_000        # session start: 4 s before the README alert
MS = 1_000_000


def event(kind: str, ts_ns: int, tgid: int, ppid: int, comm: str, **kw: Any) -> dict[str, Any]:
    """An analyzer.event map of session 25 (any kind; its own fields in ``kw``)."""
    return {"kind": kind, "ts_ns": ts_ns, "tgid": tgid, "tid": tgid, "ppid": ppid, "uid": 1000,
            "comm": comm, "root": 4000, "session_id": 25, "profile": "openclaw", **kw}


def _lineage(*chain: tuple[int, int, str]) -> list[dict[str, Any]]:
    return [{"tgid": t, "ppid": p, "comm": c} for t, p, c in chain]


GATEWAY = (4000, 1, "openclaw-gatewa")
NODE = (4100, 4000, "node")
BASH = (4200, 4100, "bash")
HELPER = (4242, 4200, "helper.sh")


def readme_session() -> list[tuple[str, dict[str, Any]]]:
    """(topic, map) in publish order: node -> bash -> writes and runs helper.sh -> ALERT -> close.

    Process tree: node(4100) > bash(4200) > helper.sh(4242); 4100 never exits before the close.
    """
    t = T0
    odd = "/tmp/openclaw-eval/\udcffodd\nname"
    return [
        ("analyzer.session", session_map("opened", created_ns=t, updated_ns=t)),
        ("analyzer.event", event("exec", t + 1 * MS, 4100, 4000, "node", path="/usr/bin/node",
                               argv=["node", "openclaw", "agent"], exe="/usr/bin/node", depth=1,
                               lineage=_lineage(NODE, GATEWAY))),
        ("analyzer.event", event("exec", t + 2 * MS, 4200, 4100, "node", path="/bin/bash",
                               argv=["bash", "-c", "x"], exe="/bin/bash", depth=2,
                               lineage=_lineage(BASH, NODE, GATEWAY))),
        ("analyzer.event", event("open", t + 3 * MS, 4200, 4100, "bash", path=odd, flags=0x241,
                               mode=0o755, ret=3)),
        ("analyzer.event", exec_event(ts_ns=README_ALERT_TS_NS, depth=3,
                                      lineage=_lineage(HELPER, BASH, NODE, GATEWAY))),
        ("analyzer.decision", readme_decision()),
        ("analyzer.event", event("exit", README_ALERT_TS_NS + 1 * MS, 4242, 4200, "helper.sh",
                               exit_code=0)),
        ("analyzer.event", event("exit", README_ALERT_TS_NS + 2 * MS, 4200, 4100, "bash", exit_code=0)),
        ("analyzer.event", event("connect", README_ALERT_TS_NS + 3 * MS, 4100, 4000, "node", family=2,
                               addr="127.0.0.1", port=18000, ret=0)),
        ("analyzer.session", session_map(
            "closed", created_ns=t, updated_ns=README_ALERT_TS_NS + 3 * MS,
            closed_ns=README_ALERT_TS_NS + 5 * MS,
            context=readme_decision()["context"],
            triggered_rules=["write_then_exec_same_path", "write_then_exec_from_suspicious_path"])),
    ]
