"""The hygiene self-check: CASA's own record of a scenario proves it stayed in its sandbox.

The sandbox makes the hygiene rules true by construction (no interface but ``lo``; every mount
read-only except the scratch-backed ones). This check proves it per run from the collector's raw
events of the scenario's process tree, before any noise filter:

* every ``connect`` and ``send`` is to 127.0.0.0/8 or ::1 (IPv4-mapped loopback included),
  whether it succeeded or not: an attempt to reach anything else is a scenario bug, made
  harmless by the namespace, and fails the run;
* every write-intent ``open`` (O_WRONLY, O_RDWR, O_CREAT or O_TRUNC) and every ``rename`` (both
  paths), ``chmod``, ``unlink`` and ``truncate`` names a path inside a scratch-backed directory
  (or a character device such as /dev/null), successful or not;
* any write-intent call that failed with EROFS is a violation whatever its path says: it reached
  the read-only rest of the system (a symlink out of /tmp, a relative path from another cwd).

Paths are compared after ``bus.paths.effective_path`` (the kernel's ``abspath`` when the collector
sends it). A relative path the kernel did not resolve cannot be placed; it is counted
(``unresolved``) and trusted only because of the read-only construction (EROFS still fails it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bus.paths import effective_path
from evaluation.attacks.layout import SPECIAL_WRITE_PATHS

__all__ = ["Violation", "Hygiene", "check", "is_loopback", "write_intent", "within"]

O_WRONLY, O_RDWR, O_CREAT, O_TRUNC = 0o1, 0o2, 0o100, 0o1000
WRITE_FLAGS = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC
EROFS = 30
PATH_KINDS = {"rename": ("path", "new_path"), "chmod": ("path",), "unlink": ("path",), "truncate": ("path",)}
NETWORK_KINDS = ("connect", "send")


@dataclass(frozen=True, slots=True)
class Violation:
    kind: str
    what: str          # the path or addr:port
    ret: int
    tgid: int
    comm: str
    why: str


@dataclass(slots=True)
class Hygiene:
    """The self-check's result for one scenario run."""

    writes: int = 0
    network: int = 0
    unresolved: int = 0
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "writes_checked": self.writes, "network_checked": self.network,
                "unresolved_relative": self.unresolved,
                "violations": [{"kind": v.kind, "what": v.what, "ret": v.ret, "tgid": v.tgid,
                                "comm": v.comm, "why": v.why} for v in self.violations]}


def is_loopback(addr: str) -> bool:
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def write_intent(event: dict[str, Any]) -> bool:
    return event.get("kind") == "open" and bool(int(event.get("flags", 0)) & WRITE_FLAGS)


def within(path: str, prefixes: Iterable[str]) -> bool:
    """``path`` is one of ``prefixes`` or below one of them (component-wise, not by substring)."""
    for p in prefixes:
        p = p.rstrip("/") or "/"
        if path == p or path.startswith(p + "/") or p == "/":
            return True
    return False


def _special(path: str) -> bool:
    return any(path == s or (s.endswith("/") and path.startswith(s)) for s in SPECIAL_WRITE_PATHS)


def _path_keys(event: dict[str, Any]) -> tuple[str, ...]:
    if write_intent(event):
        return ("path",)
    return PATH_KINDS.get(str(event.get("kind")), ())


def _check_path(event: dict[str, Any], key: str, backed: tuple[str, ...], out: Hygiene) -> None:
    path, resolved = effective_path(event, key)
    ret = int(event.get("ret", 0))
    bad = ""
    if ret == -EROFS:
        bad = "refused as read-only: the write reached outside the scratch-backed directories"
    elif resolved and not (within(path, backed) or _special(path)):
        bad = "outside every scratch-backed directory"
    elif not resolved:
        out.unresolved += 1
    if bad:
        out.violations.append(Violation(str(event["kind"]), path, ret, int(event.get("tgid", 0)),
                                        str(event.get("comm", "")), bad))


def check(events: Iterable[dict[str, Any]], backed: tuple[str, ...]) -> Hygiene:
    """The self-check over a scenario's raw collector events (see the module docstring)."""
    out = Hygiene()
    for ev in events:
        kind = ev.get("kind")
        if kind in NETWORK_KINDS:
            out.network += 1
            addr = str(ev.get("addr", ""))
            if not is_loopback(addr):
                out.violations.append(Violation(kind, f"{addr}:{ev.get('port', 0)}", int(ev.get("ret", 0)),
                                                int(ev.get("tgid", 0)), str(ev.get("comm", "")),
                                                "not a loopback address"))
            continue
        keys = _path_keys(ev)
        if keys:
            out.writes += 1
        for key in keys:
            _check_path(ev, key, backed, out)
    return out
