"""Analyzer-shaped bus maps for the sink tests (README alert example, sessions, events, and the
schema-2 kinds and facts), and ``roundtrip``, a record as the log line reads back."""

from __future__ import annotations

import json
from typing import Any

from sinks import records

# 2026-05-02T17:44:19.027509477-05:00, the README's alert timestamp (America/Chicago, CDT).
README_ALERT_TS_NS = 1777761859_027509477
README_ALERT_TIMESTAMP = "2026-05-02T17:44:19.027509477-05:00"     # as records write it (chicago)
README_TRIGGERED_RULES: list[dict[str, Any]] = [
    {"name": "write_then_exec_same_path", "expr": "history.write_then_exec_same_path", "weight": 5},
    {"name": "write_then_exec_from_suspicious_path",
     "expr": "history.write_then_exec_same_path && execution.suspicious_path_exec", "weight": 4}]


def roundtrip(rec: dict[str, Any]) -> dict[str, Any]:
    """``rec`` encoded as one log line (exactly one newline, at the end) and parsed back."""
    line = records.encode_line(rec)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    return json.loads(line)


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
        "triggered_rules": [dict(r) for r in README_TRIGGERED_RULES],
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


def signal_session() -> list[tuple[str, dict[str, Any]]]:
    """A session with schema-2 facts: an agent exec with stdio and LD_PRELOAD, a hidden write,
    a chmod, a DNS-like send, a raw socket, a capset with an all-ones mask, then a decision whose
    evidence names the chmod (in this trace) and a write from an earlier session (not)."""
    t = T0
    return [
        ("analyzer.session", session_map("opened", created_ns=t, updated_ns=t, tree_id=77,
                                         parent_session_id=24)),
        ("analyzer.event", event("exec", t + 1 * MS, 4100, 4000, "node", path="node", abspath="/usr/bin/node",
                               argv=["node"], exe="/usr/bin/node", role="agent", euid=0, prev_euid=1000,
                               stdio=[{"type": "inet", "family": 2, "addr": "127.0.0.1", "port": 4444},
                                      {"type": "pipe", "ino": 9}, {"type": "tty"}],
                               parent_stdio=["tty", "tty", "tty"],
                               ld_env={"LD_PRELOAD": b"/tmp/\xffx.so"}, tree_id=77)),
        ("analyzer.event", event("open", t + 2 * MS, 4100, 4000, "node", path="/home/u/.openclaw/s.json",
                               flags=0x241, mode=0o600, role="agent", hidden="runtime_noise")),
        ("analyzer.event", event("chmod", t + 3 * MS, 4100, 4000, "node", syscall="fchmodat", path="x.sh",
                               abspath="/tmp/x.sh", mode=0o4755, ret=0, dirfd=-100, flags=0)),
        ("analyzer.event", event("send", t + 4 * MS, 4100, 4000, "node", syscall="sendto", family=2,
                               addr="127.0.0.1", port=53, bytes=40, dns_qname_len=22,
                               dns_qname_hash=2**63 - 5, ret=40)),
        ("analyzer.event", event("socket", t + 5 * MS, 4100, 4000, "node", syscall="socket", family=17,
                               type=3, protocol=768, ret=5)),
        ("analyzer.event", event("capset", t + 6 * MS, 4100, 4000, "node", syscall="capset",
                               effective=2**64 - 1, permitted=0, inheritable=0, ret=-1)),
        ("analyzer.event", event("ptrace", t + 7 * MS, 4100, 4000, "node", syscall="ptrace", request=16,
                               target=2**64 - 1, ret=-1, target_in_tree=False)),
        ("analyzer.decision", readme_decision(
            ts_ns=t + 3 * MS, event=event("chmod", t + 3 * MS, 4100, 4000, "node", syscall="fchmodat",
                                         path="x.sh", mode=0o4755, ret=0),
            triggered_rules=[{"name": "setuid_made", "expr": "history.setuid_created", "weight": 9},
                             {"name": "dropper", "expr": "history.written_then_interpreted && "
                                                         "history.setuid_created", "weight": 1}],
            evidence={"history.setuid_created": [
                          {"ts_ns": t + 3 * MS, "tgid": 4100, "kind": "chmod", "path": "/tmp/x.sh"}],
                      "history.written_then_interpreted": [
                          {"ts_ns": t - 9 * MS, "tgid": 3999, "kind": "open", "path": b"/tmp/\xffw.sh"},
                          {"ts_ns": t + 1 * MS, "tgid": 4100, "kind": "exec", "path": "/usr/bin/node"},
                          "junk"]})),
        ("analyzer.session", session_map("closed", created_ns=t, updated_ns=t + 7 * MS, closed_ns=t + 9 * MS,
                                         tree_id=77, parent_session_id=24, complete=False,
                                         incomplete_reason="bootstrap")),
    ]


# (bus map of a schema-2 kind, the fields its events.log record has beyond the common ones)
NEW_KINDS = [
    ({"kind": "chmod", "syscall": "fchmodat", "path": "x.sh", "abspath": "/tmp/x.sh", "dirfd": -100,
      "mode": 0o4755, "flags": 0, "ret": 0},
     {"type": "CHMOD", "syscall": "fchmodat", "ret": 0, "path": "x.sh", "mode": 0o4755, "abspath": "/tmp/x.sh"}),
    ({"kind": "unlink", "syscall": "unlinkat", "path": "/var/log/auth.log", "dirfd": -100, "flags": 0, "ret": 0},
     {"type": "UNLINK", "syscall": "unlinkat", "ret": 0, "path": "/var/log/auth.log", "flags": 0}),
    ({"kind": "rename", "syscall": "renameat2", "path": "a", "abspath": "/tmp/a", "new_path": "/home/u/.bashrc",
      "dirfd": -100, "new_dirfd": -100, "flags": 0, "ret": 0},
     {"type": "RENAME", "syscall": "renameat2", "ret": 0, "path": "a", "new_path": "/home/u/.bashrc",
      "flags": 0, "abspath": "/tmp/a"}),
    ({"kind": "truncate", "syscall": "ftruncate", "path": "/home/u/.bash_history", "fd": 3, "length": 0, "ret": 0},
     {"type": "TRUNCATE", "syscall": "ftruncate", "ret": 0, "path": "/home/u/.bash_history", "length": 0}),
    ({"kind": "memfd", "syscall": "memfd_create", "name": "payload", "flags": 1, "ret": 3},
     {"type": "MEMFD", "syscall": "memfd_create", "ret": 3, "name": "payload", "flags": 1}),
    ({"kind": "ptrace", "syscall": "ptrace", "request": 16, "target": 777, "ret": -1, "target_in_tree": False},
     {"type": "PTRACE", "syscall": "ptrace", "ret": -1, "request": 16, "target": 777, "target_in_tree": False}),
    ({"kind": "vm_read", "syscall": "process_vm_readv", "target": 777, "ret": 4096},
     {"type": "VM_READ", "syscall": "process_vm_readv", "ret": 4096, "target": 777}),
    ({"kind": "send", "syscall": "sendto", "family": 2, "addr": "127.0.0.1", "port": 53, "bytes": 40,
      "sock_type": 2, "messages": 1, "connected": False, "dns_qname_len": 22, "dns_qname_hash": 2**63 - 5,
      "dns_qtype": 16, "ret": 40},
     {"type": "SEND", "syscall": "sendto", "ret": 40, "addr": "127.0.0.1", "port": 53, "bytes": 40,
      "dns_qname_len": 22, "dns_qname_hash": "0x7ffffffffffffffb"}),
    ({"kind": "bind", "syscall": "bind", "family": 10, "addr": "::", "port": 4444, "ret": 0},
     {"type": "BIND", "syscall": "bind", "ret": 0, "addr": "::", "port": 4444}),
    ({"kind": "listen", "syscall": "listen", "family": 2, "addr": "0.0.0.0", "port": 4444, "backlog": 1, "ret": 0},
     {"type": "LISTEN", "syscall": "listen", "ret": 0, "addr": "0.0.0.0", "port": 4444, "backlog": 1}),
    ({"kind": "socket", "syscall": "socket", "family": 17, "type": 3, "protocol": 768, "ret": 5},
     {"type": "SOCKET", "syscall": "socket", "ret": 5, "family": 17, "sock_type": 3, "protocol": 768}),
    ({"kind": "setid", "syscall": "setresuid", "ids": [0, 0, -1], "euid": 0, "egid": 1000, "ret": 0},
     {"type": "SETID", "syscall": "setresuid", "ret": 0, "ids": [0, 0, -1], "euid": 0}),
    ({"kind": "capset", "syscall": "capset", "effective": 1 << 21, "permitted": 2**64 - 1,
      "inheritable": 0, "pid": 0, "ret": -1},
     {"type": "CAPSET", "syscall": "capset", "ret": -1, "effective": "0x200000",
      "permitted": "0xffffffffffffffff", "inheritable": "0x0"}),
]
