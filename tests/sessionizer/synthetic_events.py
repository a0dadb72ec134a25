"""Synthetic collector events for the sessionizer tests, written exactly as docs/bus.md describes
them (so bus.validate_event accepts them), plus readers for the core's (topic, map) outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agents import load_profiles
from sessionizer.core import Sessionizer
from sessionizer.settings import Settings, settings_from

HERE = Path(__file__).resolve().parent
RULES = HERE / "rules.json"
CONFIG = HERE.parent.parent / "config" / "casa.json"
S = 1_000_000_000
T0 = 1_700_000_000 * S

GATEWAY, WORKER, CLI = 1000, 1001, 2000
HOMES = {1000: "/home/agent", 0: "/root"}          # the passwd the tests' cores see


class Events:
    """Builds collector event maps; ``ts`` is seconds after T0."""

    def _common(self, kind: str, tgid: int, ppid: int, ts: float, comm: str = "x") -> dict[str, Any]:
        return {"kind": kind, "ts_ns": T0 + int(ts * S), "tgid": tgid, "tid": tgid, "ppid": ppid,
                "uid": 1000, "comm": comm, "root": 0}

    def exec(self, tgid: int, ppid: int, path: str | bytes, argv: list[Any] | None = None,
             ts: float = 0.0, ret: int = 0, comm: str = "bash", **extra: Any) -> dict[str, Any]:
        """``extra``: schema-2 fields (``abspath``, ``ino``, ``dev``, ...) or overrides."""
        e = self._common("exec", tgid, ppid, ts, comm)
        e.update({"syscall": "execve", "path": path, "argv": argv if argv is not None else [path],
                  "argv_truncated": False, "ret": ret, "exe": path, "dirfd": -100, "flags": 0,
                  "cap_eff": 0, "seccomp": 2})
        e.update(extra)
        return e

    def open(self, tgid: int, ppid: int, path: str | bytes, ts: float = 0.0, flags: int = 0,
             **extra: Any) -> dict[str, Any]:
        e = self._common("open", tgid, ppid, ts)
        e.update({"syscall": "openat", "path": path, "flags": flags, "mode": 0, "ret": 3})
        e.update(extra)
        return e

    def other(self, kind: str, tgid: int, ppid: int, ts: float = 0.0, **fields: Any) -> dict[str, Any]:
        """A schema-2 kind (chmod, rename, ptrace, ...) with the contract's fields: ``syscall``
        and ``ret`` by default, the rest as given."""
        e = self._common(kind, tgid, ppid, ts)
        e.update({"syscall": kind, "ret": 0})
        e.update(fields)
        return e

    def connect(self, tgid: int, ppid: int, addr: str, port: int, ts: float = 0.0,
                family: int = 2) -> dict[str, Any]:
        e = self._common("connect", tgid, ppid, ts)
        e.update({"family": family, "addr": addr, "port": port, "ret": 0})
        return e

    def exit(self, tgid: int, ppid: int, ts: float = 0.0) -> dict[str, Any]:
        e = self._common("exit", tgid, ppid, ts)
        e["exit_code"] = 0
        return e

    def fork(self, tgid: int, ppid: int, child: int, ts: float = 0.0) -> dict[str, Any]:
        e = self._common("fork", tgid, ppid, ts)
        e["child_tgid"] = child
        return e

    def root(self, tgid: int, ppid: int, profile: str, exe: str = "/usr/bin/node",
             ts: float = 0.0, comm: str = "openclaw-gatewa", argv: list[str] | None = None,
             reason: str = "bootstrap", **extra: Any) -> dict[str, Any]:
        e = self._common("root", tgid, ppid, ts, comm)
        e.update({"profile": profile, "reason": reason, "exe": exe,
                  "argv": argv if argv is not None else [exe]})
        e.update(extra)
        return e

    def loss(self, count: int, ts: float = 0.0) -> dict[str, Any]:
        return {"kind": "loss", "ts_ns": T0 + int(ts * S), "count": count, "where": "kernel"}


def cli_argv() -> list[str]:
    return ["node", "/opt/nvm/v24/bin/openclaw", "agent", "--agent", "main", "-m", "hello"]


def feed(core: Sessionizer, events: list[dict[str, Any]],
         now: int | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Hand ``events`` to the core in order, each at its own ``ts_ns`` (or all at ``now``):
    every (topic, map) it publishes."""
    out = []
    for e in events:
        out += core.handle(e, now if now is not None else e["ts_ns"])
    return out


def topics(outputs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [t for t, _ in outputs]


def events_of(outputs: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [m for t, m in outputs if t == "sessionizer.event"]


def lifecycle_of(outputs: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [m for t, m in outputs if t == "sessionizer.session"]


def profiles_only(data: dict[str, Any]) -> Settings:
    return settings_from(load_profiles(data=data))


# The schema-2 kinds (docs/bus.md §5.10-§5.22), for tests that run where the bus tables lack
# them: the ``schema2_kinds`` fixture adds whichever are missing.
SCHEMA2_KINDS: dict[str, dict[str, tuple[type, ...]]] = {
    "chmod": {"syscall": (str,), "path": (str, bytes), "dirfd": (int,), "mode": (int,), "ret": (int,)},
    "unlink": {"syscall": (str,), "path": (str, bytes), "dirfd": (int,), "flags": (int,), "ret": (int,)},
    "rename": {"syscall": (str,), "path": (str, bytes), "new_path": (str, bytes), "dirfd": (int,),
               "new_dirfd": (int,), "flags": (int,), "ret": (int,)},
    "truncate": {"syscall": (str,), "path": (str, bytes), "length": (int,), "ret": (int,)},
    "memfd": {"syscall": (str,), "name": (str, bytes), "flags": (int,), "ret": (int,)},
    "ptrace": {"syscall": (str,), "request": (int,), "target": (int,), "ret": (int,)},
    "vm_read": {"syscall": (str,), "target": (int,), "ret": (int,)},
    "send": {"syscall": (str,), "family": (int,), "addr": (str,), "port": (int,), "bytes": (int,),
             "ret": (int,)},
    "bind": {"syscall": (str,), "family": (int,), "addr": (str,), "port": (int,), "ret": (int,)},
    "listen": {"syscall": (str,), "family": (int,), "addr": (str,), "port": (int,),
               "backlog": (int,), "ret": (int,)},
    "socket": {"syscall": (str,), "family": (int,), "type": (int,), "protocol": (int,), "ret": (int,)},
    "setid": {"syscall": (str,), "ids": (list,), "euid": (int,), "ret": (int,)},
    "capset": {"syscall": (str,), "effective": (int,), "permitted": (int,), "inheritable": (int,),
               "ret": (int,)},
}
