"""Configured endpoints (LLM providers, chat channels, known CIDRs): the runtime's own traffic.

A CONNECT to one of these by the agent runtime itself (tracker depth 0) is not a security event
(docs/original.md §6.4a); the same endpoint contacted by a tool child is kept. URLs are parsed as
in the original (host lower-cased; the explicit port, else 443 whatever the scheme) and resolved
by DNS in a background thread, every ``configured_connect_refresh_seconds`` and immediately after
a reload (the original only resolved at start). ``matches()`` never blocks: it reads an immutable
snapshot that the thread swaps in whole. A failed resolution keeps the previous addresses of that
host. ``known_cidrs`` match by prefix, port ignored, without DNS.

Deviation: an unparsable URL or CIDR is skipped with a warning instead of disabling the whole
classifier (one typo should not turn every provider connect into a security event).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from sessionizer.gates import canonical_ip

__all__ = ["Endpoint", "EndpointSet", "ConfiguredEndpoints", "parse_url", "DEFAULT_PORT"]

DEFAULT_PORT = 443
MIN_REFRESH_S = 1.0

log = logging.getLogger("casa.sessionizer.connect")

Resolver = Callable[[str], list[str]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One configured URL reduced to what a connect shows: host and port."""

    host: str
    port: int


@dataclass(frozen=True, slots=True)
class EndpointSet:
    """An immutable snapshot: resolved (addr, port) pairs plus CIDR networks."""

    pairs: frozenset[tuple[str, int]] = frozenset()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    def matches(self, addr: str, port: int) -> bool:
        canon = canonical_ip(addr)
        if canon is None:
            return False
        if (canon, port) in self.pairs:
            return True
        ip = ipaddress.ip_address(canon)
        return any(ip.version == n.version and ip in n for n in self.networks)


def parse_url(url: str) -> Endpoint:
    """``https://API.example.com`` -> Endpoint("api.example.com", 443); ValueError if unusable."""
    text = url.strip()
    parts = urlsplit(text if "://" in text else "//" + text)
    host = (parts.hostname or "").lower()
    if not host:
        raise ValueError(f"no host in {url!r}")
    return Endpoint(host, parts.port or DEFAULT_PORT)      # .port raises ValueError when invalid


def system_resolver(host: str) -> list[str]:
    """All addresses of ``host`` (IPv4 and IPv6); raises OSError on failure."""
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return sorted({str(info[4][0]) for info in infos})


class ConfiguredEndpoints:
    """The resolved endpoint set plus the thread that keeps it fresh."""

    def __init__(self, resolver: Resolver = system_resolver) -> None:
        self._resolver = resolver
        self._snapshot = EndpointSet()
        self._endpoints: tuple[Endpoint, ...] = ()
        self._networks: tuple = ()
        self._known: dict[str, frozenset[str]] = {}     # host -> last good addresses
        self._refresh_s = 300.0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.resolve_failures = 0

    def matches(self, addr: str, port: int) -> bool:
        return self._snapshot.matches(addr, port)

    @property
    def snapshot(self) -> EndpointSet:
        return self._snapshot

    def configure(self, urls: tuple[str, ...] | list[str], cidrs: tuple[str, ...] | list[str],
                  refresh_s: float) -> None:
        """Set what to resolve; the thread re-resolves at once (the reload path)."""
        endpoints, networks = [], []
        for url in urls:
            try:
                endpoints.append(parse_url(url))
            except ValueError as exc:
                log.warning("configured URL skipped: cannot parse it | url=%r reason=%s", url, exc)
        for cidr in cidrs:
            try:
                networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
            except ValueError as exc:
                log.warning("known CIDR skipped: cannot parse it | cidr=%r reason=%s", cidr, exc)
        with self._lock:
            self._endpoints = tuple(endpoints)
            self._networks = tuple(networks)
            self._refresh_s = max(float(refresh_s), MIN_REFRESH_S)
            self._snapshot = EndpointSet(self._pairs_from_known(), self._networks)
        self._wake.set()

    def _pairs_from_known(self) -> frozenset[tuple[str, int]]:
        pairs = set()
        for ep in self._endpoints:
            for addr in self._known.get(ep.host, ()):
                pairs.add((addr, ep.port))
        return frozenset(pairs)

    def refresh(self) -> None:
        """Resolve every host once (blocking; called by the thread, or directly by tests)."""
        with self._lock:
            endpoints = self._endpoints
        for host in sorted({ep.host for ep in endpoints}):
            try:
                addrs = frozenset(c for c in (canonical_ip(a) for a in self._resolver(host)) if c)
            except (OSError, UnicodeError) as exc:
                self.resolve_failures += 1
                log.warning("configured host not resolved; keeping its previous addresses "
                            "| host=%s reason=%s", host, exc)
                continue
            with self._lock:
                self._known[host] = addrs
        with self._lock:
            self._snapshot = EndpointSet(self._pairs_from_known(), self._networks)

    def start(self) -> None:
        """Start the refresh thread (daemon); it resolves immediately, then every refresh_s."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="casa-dns-refresh", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            self.refresh()
            self._wake.wait(timeout=self._refresh_s)
