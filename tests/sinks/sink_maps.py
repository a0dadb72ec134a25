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
