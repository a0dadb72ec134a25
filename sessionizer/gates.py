"""Noise lists and the connect filters (docs/original.md §6.4b), re-scoped and anchored.

Two kinds of path noise, with different scopes (docs/sessionizer.md "Gates"):

* **loader noise**, for any process: what the dynamic loader, libc and the language runtimes
  read in every process (``/etc/ld.so.cache``, ``.so`` files in root-owned library directories,
  locale data, ``/proc/self``, non-pid ``/proc`` files, CPU and cgroup polling). Matched on the
  absolute, normalised path, exactly (no case folding, no trimming: ``/tmp/X `` is another file),
  and only for opens **without write intent**: a write to one of these files is never noise.
* **runtime noise**, only for processes of ``role: agent`` (the runtime's own image): its state
  under the agent user's real home, its install directory, its lock directory, SQLite temp
  files, package manifests, the user's rc files. Anchored to directories derived per root
  (noise.py); a tool process is never filtered as runtime noise.

The lists are configurable (config/casa.json, section ``sessionizer.noise``). Substring filters
(``loader_contains``, ``session_file_contains``) were a hiding place (a payload under
``/tmp/x/.openclaw/`` matched ``/.openclaw/``) and are gone: absolute directories listed there
are read as ``runtime_dirs`` (anchored, agent only), anything else is ignored; both with a warning.

An exec that failed with ENOENT (a PATH-search miss) never ran anything and is dropped; no other
filter ever drops an exec (roles.py).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Any

from sessionizer.anchors import in_dirs

__all__ = ["NoiseLists", "ConnectPolicy", "NoiseError", "ENOENT", "routine_exec", "exec_not_found",
           "connect_noise", "connect_drop_reason", "canonical_ip", "is_loopback"]

ENOENT = 2
AF_INET, AF_INET6 = 2, 10
LEGACY_CONTAINS = ("loader_contains", "session_file_contains")
LEGACY_IGNORED = ("session_file_suffixes",)

log = logging.getLogger("casa.sessionizer")


class NoiseError(ValueError):
    """The ``sessionizer.noise`` section of config/casa.json is invalid; names the field."""


@dataclass(frozen=True, slots=True)
class NoiseLists:
    """What counts as routine noise (docs/sessionizer.md). Paths are absolute and exact."""

    # loader noise, any process, read-only opens. Beyond the original: Node's CPU and cgroup
    # polling (about twice a second from an idle OpenClaw gateway), locale data (~20 files per
    # process with a UTF-8 LANG), /etc/hosts (every resolver call). /proc is handled in code:
    # /proc itself, /proc/self, /proc/thread-self, /proc/<own pid>, non-pid files.
    loader_exact: tuple[str, ...] = ("/etc/ld.so.cache", "/etc/hosts")
    loader_prefixes: tuple[str, ...] = ("/sys/devices/system/cpu/", "/sys/fs/cgroup/",
                                        "/usr/lib/locale/")
    # shared objects (a ".so" in the file name) and glibc's gconv cache below these directories,
    # each checked at load to be root-owned and not writable by others (anchors.py)
    library_dirs: tuple[str, ...] = ("/lib", "/usr/lib", "/lib64")
    # runtime noise, role agent only. Home-relative directories and files (the agent user's
    # real home, from passwd of the root's uid), absolute directories ("{uid}": the root's uid),
    # absolute name prefixes, and file names anywhere (package manifests).
    runtime_home_dirs: tuple[str, ...] = (".openclaw", ".cache/openclaw", ".nvm")
    runtime_home_files: tuple[str, ...] = (".bashrc", ".profile")
    runtime_dirs: tuple[str, ...] = ("/tmp/openclaw-state-locks-{uid}",)
    runtime_prefixes: tuple[str, ...] = ("/var/tmp/etilqs_",)
    runtime_names: tuple[str, ...] = ("package.json", "package-lock.json")
    # routine execs (transparent, published with role "routine" when the executable is in a
    # system directory): basename -> exact argument lists (argv[0] optional)
    routine_execs: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("uname", ("-a",)), ("whoami", ()), ("pwd", ()), ("id", ()), ("ip", ("neigh", "show")))
    # CONNECT ports dropped when the runtime itself (role agent, runtime profile) connects:
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
        unknown = set(raw) - known - set(LEGACY_CONTAINS) - set(LEGACY_IGNORED)
        if unknown:
            raise NoiseError(f"sessionizer.noise: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
        values: dict[str, Any] = {}
        for name, value in raw.items():
            if name == "routine_execs":
                values[name] = _routine_execs(value)
            elif name == "runtime_dns_ports":
                values[name] = _ports(value, name)
            elif name in LEGACY_CONTAINS or name in LEGACY_IGNORED:
                continue
            else:
                values[name] = _strings(value, name)
        legacy = _legacy_dirs(raw)
        if legacy:
            values["runtime_dirs"] = values.get("runtime_dirs", cls().runtime_dirs) + legacy
        return cls(**values)


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise NoiseError(f"sessionizer.noise.{name}: must be a list of non-empty strings")


def _legacy_dirs(raw: dict[str, Any]) -> tuple[str, ...]:
    """Absolute directories listed under the retired substring keys, as anchored runtime dirs."""
    out: list[str] = []
    for name in LEGACY_CONTAINS + LEGACY_IGNORED:
        if name not in raw:
            continue
        entries = _strings(raw[name], name)
        kept = [e.rstrip("/") for e in entries
                if name in LEGACY_CONTAINS and e.startswith("/") and e.count("/") > 2]
        log.warning("sessionizer.noise.%s is retired (a substring filter is a hiding place); "
                    "absolute directories are read as runtime_dirs (role agent only), the rest "
                    "is ignored | kept=%s ignored=%s", name, kept,
                    [e for e in entries if e.rstrip("/") not in kept])
        out += kept
    return tuple(out)


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


def routine_exec(path: str, argv: list[str], lists: NoiseLists, system_dirs: frozenset[str]) -> bool:
    """``uname -a``, ``whoami``, ``pwd``, ``id``, ``ip neigh show`` (args with or without argv[0]),
    and only when ``path`` (absolute, normalised) is directly in a system directory: a
    ``/tmp/d/id`` is never routine, whatever its name and arguments."""
    if not in_dirs(path, system_dirs):
        return False
    name = path.rsplit("/", 1)[-1]
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


def connect_drop_reason(event: dict[str, Any], policy: ConnectPolicy) -> str | None:
    """The filters of one CONNECT, in order: ``missing_fields`` (no address or port 0), then
    :func:`connect_noise`; None means keep."""
    if not event.get("addr") or not event.get("port"):
        return "missing_fields"
    return connect_noise(event, policy)
