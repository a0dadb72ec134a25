"""One valid event of every kind, and the stage-added maps, as the bus contract describes them.

Shared by the bus contract tests, the CLI tests and the stage contract test (tests/stack/contract.py).
"""

from __future__ import annotations

from typing import Any

TS_NS = 1_764_000_000_123_456_789

_COMMON: dict[str, Any] = {"ts_ns": TS_NS, "tgid": 4242, "tid": 4243, "ppid": 4000, "uid": 1000,
                           "comm": "bash", "root": 4000}

SAMPLE_EVENTS: dict[str, dict[str, Any]] = {
    "exec": {**_COMMON, "kind": "exec", "syscall": "execve", "path": "/tmp/helper.sh",
             "argv": ["/tmp/helper.sh", "-x"], "argv_truncated": False, "ret": 0,
             "exe": "/tmp/helper.sh", "dirfd": -100, "flags": 0, "cap_eff": 0, "seccomp": 0},
    "open": {**_COMMON, "kind": "open", "syscall": "openat", "path": "/tmp/helper.sh",
             "flags": 0x241, "mode": 0o755, "ret": 3},
    "connect": {**_COMMON, "kind": "connect", "family": 2, "addr": "93.184.216.34", "port": 443,
                "ret": -115},
    "exit": {**_COMMON, "kind": "exit", "exit_code": 0},
    "fork": {**_COMMON, "kind": "fork", "child_tgid": 4244},
    "root": {**_COMMON, "kind": "root", "profile": "openclaw-cli", "reason": "exec",
             "exe": "/usr/bin/node", "argv": ["node", "openclaw.mjs", "agent", "-m", "hi"]},
    "loss": {"kind": "loss", "ts_ns": TS_NS, "count": 17, "where": "kernel"},
    # schema 2: the detection signals (docs/bus.md §5.10-§5.22)
    "chmod": {**_COMMON, "kind": "chmod", "syscall": "fchmodat", "path": "x.sh", "abspath": "/tmp/x.sh",
              "dirfd": -100, "mode": 0o4755, "flags": 0, "ret": 0},
    "unlink": {**_COMMON, "kind": "unlink", "syscall": "unlinkat", "path": "/var/log/auth.log",
               "dirfd": -100, "flags": 0, "ret": 0},
    "rename": {**_COMMON, "kind": "rename", "syscall": "renameat2", "path": "a", "abspath": "/tmp/a",
               "new_path": "/home/u/.bashrc", "dirfd": -100, "new_dirfd": -100, "flags": 0, "ret": 0},
    "truncate": {**_COMMON, "kind": "truncate", "syscall": "ftruncate", "path": "/home/u/.bash_history",
                 "fd": 3, "length": 0, "ret": 0},
    "memfd": {**_COMMON, "kind": "memfd", "syscall": "memfd_create", "name": "payload", "flags": 1, "ret": 3},
    "ptrace": {**_COMMON, "kind": "ptrace", "syscall": "ptrace", "request": 16, "target": 777, "ret": 0},
    "vm_read": {**_COMMON, "kind": "vm_read", "syscall": "process_vm_readv", "target": 777, "ret": 4096},
    "send": {**_COMMON, "kind": "send", "syscall": "sendto", "family": 2, "addr": "127.0.0.1",
             "port": 53, "bytes": 40, "sock_type": 2, "messages": 1, "connected": False,
             "dns_qname_len": 22, "dns_qname_hash": 1234567, "dns_qtype": 16, "ret": 40},
    "bind": {**_COMMON, "kind": "bind", "syscall": "bind", "family": 10, "addr": "::", "port": 4444, "ret": 0},
    "listen": {**_COMMON, "kind": "listen", "syscall": "listen", "family": 2, "addr": "0.0.0.0",
               "port": 4444, "backlog": 1, "ret": 0},
    "socket": {**_COMMON, "kind": "socket", "syscall": "socket", "family": 17, "type": 3,
               "protocol": 768, "ret": 5},
    "setid": {**_COMMON, "kind": "setid", "syscall": "setresuid", "ids": [0, 0, -1], "euid": 0,
              "egid": 1000, "ret": 0},
    "capset": {**_COMMON, "kind": "capset", "syscall": "capset", "effective": 1 << 21,
               "permitted": 1 << 21, "inheritable": 0, "pid": 0, "ret": -1},
}

SESSION_MAP: dict[str, Any] = {
    "kind": "session", "state": "opened", "session_id": 7, "profile": "openclaw-cli",
    "leader_tgid": 4000, "created_ns": TS_NS, "updated_ns": TS_NS, "closed_ns": None,
    "complete": True, "lost_events": 0,
}

DECISION_MAP: dict[str, Any] = {
    "kind": "decision", "session_id": 7, "ts_ns": TS_NS,
    "event": {**SAMPLE_EVENTS["exec"], "session_id": 7, "profile": "openclaw-cli", "depth": 2},
    "action": "ALERT", "score": 9, "increment": 9, "log_threshold": 4, "alert_threshold": 9,
    "triggered_rules": [{"name": "write_then_exec_same_path", "expr": "history.write_then_exec",
                         "weight": 5}],
    "context": {"execution": {}, "capability": {}, "history": {"write_then_exec": True}},
    "rules_version": "0123456789ab",
}

CONTROL_MAP: dict[str, Any] = {"kind": "control", "command": "reload", "id": 1, "requested_ns": TS_NS}
