"""Noise filters of the original (casa-original.md §6.4b), as named predicates over one event.

Each predicate answers "is this event routine runtime noise?" and returns the name of the reason
(counted per reason in the heartbeat) or None. Path tests run on the trimmed, lower-cased path, as
in the original; the event itself is never modified. The lists are configurable (config/casa.json,
section ``sessionizer.noise``); the defaults are the original's, with its hard-coded home directory
generalised (``/home/ubuntu/.profile`` becomes "any path ending in /.profile").

Caveats: the filters see raw syscall strings, so a relative ``open("package.json")`` is compared as
given; an exec that failed with ENOENT (a PATH-search miss) never ran anything and is dropped.
"""

from __future__ import annotations

import functools
import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any

from bus.text import from_wire

__all__ = ["NoiseLists", "ConnectPolicy", "NoiseError", "ENOENT", "missing_fields", "loader_noise",
           "session_file_noise", "routine_exec", "exec_not_found", "connect_noise", "ingest_drop_reason",
           "canonical_ip", "is_loopback", "open_path_reason", "PathReasons"]

ENOENT = 2
AF_INET, AF_INET6 = 2, 10


class NoiseError(ValueError):
    """The ``sessionizer.noise`` section of config/casa.json is invalid; names the field."""


@dataclass(frozen=True, slots=True)
class NoiseLists:
    """What counts as routine noise. Matching is on the trimmed, lower-cased path."""

    # runtime loader noise (OPEN). Beyond the original: Node's CPU and cgroup polling (os.cpus(),
    # memory limits), seen about twice a second from an idle OpenClaw 2026.9 gateway; the locale
    # files (~20 per process with a UTF-8 LANG); a global npm install of OpenClaw (like /.nvm/).
    loader_exact: tuple[str, ...] = ("/etc/ld.so.cache", "/proc")
    loader_prefixes: tuple[str, ...] = ("/proc/", "/sys/devices/system/cpu/", "/sys/fs/cgroup/",
                                        "/usr/lib/locale/")
    loader_contains: tuple[str, ...] = ("/.nvm/", "/lib/node_modules/openclaw/")
    library_dirs: tuple[str, ...] = ("/lib/", "/usr/lib/", "/lib64/")   # with ".so" in the path
    # routine session file noise (OPEN). Beyond the original: the runtime's own SQLite temp
    # files, state locks and caches (OpenClaw 2026.9).
    session_file_contains: tuple[str, ...] = ("/.openclaw/", "/gconv/gconv-modules.cache",
                                              "/etc/bash.bashrc", "/var/tmp/etilqs_",
                                              "/tmp/openclaw-state-locks-", "/.cache/openclaw/")
    session_file_suffixes: tuple[str, ...] = ("/package.json", "/package-lock.json", "/etc/hosts",
                                              "/.bashrc", "/.profile")
    # transparent routine execs (EXEC): basename -> exact argument lists (argv[0] optional)
    routine_execs: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("uname", ("-a",)), ("whoami", ()), ("pwd", ()), ("id", ()), ("ip", ("neigh", "show")))
    # CONNECT ports dropped when the runtime itself (depth 0 of a runtime profile) connects:
    # its own DNS lookups to a non-loopback resolver (a tool child's are kept; core.py applies it)
    runtime_dns_ports: tuple[int, ...] = (53,)

    @classmethod
    def from_config(cls, raw: Any) -> "NoiseLists":
        """Build from ``{"loader_exact": [...], ..., "routine_execs": [["uname", "-a"], ...]}``.

        Missing keys keep the defaults; an empty list means "no such filter".
        """
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise NoiseError("sessionizer.noise: must be an object")
        known = set(cls.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown:
            raise NoiseError(f"sessionizer.noise: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
        values: dict[str, Any] = {}
        for name, value in raw.items():
            if name == "routine_execs":
                values[name] = _routine_execs(value)
            elif name == "runtime_dns_ports":
                values[name] = _ports(value, name)
            elif isinstance(value, list) and all(isinstance(v, str) and v for v in value):
                values[name] = tuple(v.strip().lower() for v in value)
            else:
                raise NoiseError(f"sessionizer.noise.{name}: must be a list of non-empty strings")
        return cls(**values)


def _routine_execs(value: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if not isinstance(value, list) or not all(
            isinstance(v, list) and v and all(isinstance(s, str) for s in v) for v in value):
        raise NoiseError("sessionizer.noise.routine_execs: must be a list of [basename, arg, ...] lists")
    return tuple((v[0], tuple(v[1:])) for v in value)


def _ports(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
            type(v) is int and 0 < v < 65536 for v in value):
        raise NoiseError(f"sessionizer.noise.{name}: must be a list of ports (1-65535)")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class ConnectPolicy:
    """Connect filters from rules.json analysis (``allowed_loopback_ports``, ``ignored_connect_ips``)."""

    allowed_loopback_ports: frozenset[int] = frozenset()
    ignored_connect_ips: frozenset[str] = field(default_factory=frozenset)   # canonical form

    @classmethod
    def build(cls, ports: tuple[int, ...] | list[int], ips: tuple[str, ...] | list[str]) -> "ConnectPolicy":
        canon = {c for c in (canonical_ip(ip) for ip in ips) if c is not None}
        return cls(frozenset(int(p) for p in ports), frozenset(canon))


IP_CACHE_SIZE = 4096     # distinct addresses remembered: parsing one costs ~4 us, a hit ~0.1 us


@functools.lru_cache(maxsize=IP_CACHE_SIZE)
def canonical_ip(addr: str) -> str | None:
    """Compressed text of an address; IPv4-mapped IPv6 becomes dotted IPv4; None if unparsable.
    Pure, so cached: an agent talks to few addresses, again and again."""
    try:
        ip = ipaddress.ip_address(addr.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return ip.compressed


@functools.lru_cache(maxsize=IP_CACHE_SIZE)
def is_loopback(canon: str) -> bool:
    return ipaddress.ip_address(canon).is_loopback


def _text(value: Any) -> str:
    """Wire text (str, or bytes for non-UTF-8) as a stage-side str; anything else is empty."""
    if type(value) is str:                    # the common case, without the calls below
        return value
    return from_wire(value) if isinstance(value, (str, bytes)) else ""


def _norm(path: Any) -> str:
    return _text(path).strip().lower()


def missing_fields(event: dict[str, Any]) -> str | None:
    """OPEN with an empty path; CONNECT with an empty address or port 0."""
    kind = event.get("kind")
    if kind == "open" and not _norm(event.get("path")):
        return "missing_fields"
    if kind == "connect" and (not event.get("addr") or not event.get("port")):
        return "missing_fields"
    return None


def loader_noise(path: str, lists: NoiseLists) -> bool:
    """The dynamic loader and runtime plumbing: ld.so.cache, shared libraries, /proc, nvm."""
    if path in lists.loader_exact or path.startswith(lists.loader_prefixes):
        return True
    if ".so" in path and path.startswith(lists.library_dirs):
        return True
    for s in lists.loader_contains:           # a plain loop: no generator per open event
        if s in path:
            return True
    return False


def session_file_noise(path: str, lists: NoiseLists) -> bool:
    """Files every agent turn touches: runtime state, package manifests, shell rc files."""
    if path.endswith(lists.session_file_suffixes):
        return True
    for s in lists.session_file_contains:
        if s in path:
            return True
    return False


def open_path_reason(raw: Any, lists: NoiseLists) -> str | None:
    """The filters of an OPEN's path, in order: ``missing_fields`` (empty), ``loader_noise``,
    ``session_file_noise``, else None. ``raw`` is the event's path as it came off the wire."""
    path = _norm(raw)
    if not path:
        return "missing_fields"
    if loader_noise(path, lists):
        return "loader_noise"
    if session_file_noise(path, lists):
        return "session_file_noise"
    return None


PATH_MEMO_SIZE = 4096    # distinct paths remembered; a hit costs ~0.1 us, a miss ~0.5 us


class PathReasons:
    """:func:`open_path_reason` for one :class:`NoiseLists`, remembered per distinct raw path.

    An agent opens the same files again and again (its sources, configs, libraries), so most
    opens are answered by one dict lookup. Bounded: when full it starts over. Built with the
    lists it answers for (Settings builds one per configuration), so a reload that changes the
    lists gets a fresh, empty one and can never be answered from the old lists.
    """

    __slots__ = ("lists", "size", "_memo")

    def __init__(self, lists: NoiseLists, size: int = PATH_MEMO_SIZE) -> None:
        self.lists = lists
        self.size = size
        self._memo: dict[str | bytes, str | None] = {}

    def __len__(self) -> int:
        return len(self._memo)

    def reason(self, raw: Any) -> str | None:
        kind = type(raw)
        if kind is not str and kind is not bytes:       # not hashable text: no memo
            return open_path_reason(raw, self.lists)
        memo = self._memo
        try:
            return memo[raw]
        except KeyError:
            pass
        reason = open_path_reason(raw, self.lists)
        if len(memo) >= self.size:
            memo.clear()
        memo[raw] = reason
        return reason


def routine_exec(event: dict[str, Any], lists: NoiseLists) -> bool:
    """``uname -a``, ``whoami``, ``pwd``, ``id``, ``ip neigh show`` (args with or without argv[0])."""
    name = os.path.basename(_text(event.get("path")).strip())
    argv = [_text(a) for a in event.get("argv") or []]
    for base, args in lists.routine_execs:
        if name != base:
            continue
        if argv == list(args) or argv[1:] == list(args):
            return True
    return False


def exec_not_found(event: dict[str, Any]) -> bool:
    """A failed PATH-search attempt (ret -ENOENT): nothing was executed."""
    return event.get("kind") == "exec" and event.get("ret") == -ENOENT


def connect_noise(event: dict[str, Any], policy: ConnectPolicy) -> str | None:
    """Unspecified address, port 0, non-IP families, ignored IPs, loopback not explicitly allowed."""
    family = event.get("family", AF_INET)
    if family not in (AF_INET, AF_INET6):
        return "non_inet_connect"
    canon = canonical_ip(str(event.get("addr", "")))
    port = event.get("port", 0)
    if canon is None:
        return None                       # unparsable: kept, the analyzer decides
    if canon in ("0.0.0.0", "::") or not port:
        return "unspecified_connect"
    if canon in policy.ignored_connect_ips:
        return "ignored_connect_ip"
    if is_loopback(canon) and port not in policy.allowed_loopback_ports:
        return "loopback_connect"
    return None


def ingest_drop_reason(event: dict[str, Any], lists: NoiseLists, policy: ConnectPolicy,
                       paths: PathReasons | None = None) -> str | None:
    """The context-ingest filter of §6.4b for one non-EXIT event; None means keep.

    Same checks, in the same order, as :func:`missing_fields` followed by the per-kind filters;
    the path is normalised once (this runs for every event). ``paths``: a memo of the OPEN
    filters for ``lists`` (the sessionizer's), else they are computed for this event."""
    kind = event.get("kind")
    if kind == "open":
        raw = event.get("path")
        return paths.reason(raw) if paths is not None else open_path_reason(raw, lists)
    elif kind == "connect":
        if not event.get("addr") or not event.get("port"):
            return "missing_fields"
        return connect_noise(event, policy)
    elif kind == "exec":
        if exec_not_found(event):
            return "exec_not_found"
        if routine_exec(event, lists):
            return "routine_exec"
    return None
