"""Configured endpoints: URL parsing, CIDRs, the background DNS refresh and re-resolve on reload."""

from __future__ import annotations

import threading
import time

import pytest

from sessionizer.connect_filter import ConfiguredEndpoints, Endpoint, parse_url
from tests.harness.polling import wait_for


@pytest.mark.parametrize("url, endpoint", [
    ("https://API.Example.com", Endpoint("api.example.com", 443)),
    ("http://example.com/v1", Endpoint("example.com", 443)),          # 443 whatever the scheme
    ("http://127.0.0.1:18080/v1", Endpoint("127.0.0.1", 18080)),
    ("wss://[2001:db8::5]:8443/ws", Endpoint("2001:db8::5", 8443)),
    ("llm.example.test:9000", Endpoint("llm.example.test", 9000)),
])
def test_parse_url(url, endpoint):
    assert parse_url(url) == endpoint


@pytest.mark.parametrize("url", ["", "https://", "http://host:99999"])
def test_parse_url_rejects(url):
    with pytest.raises(ValueError):
        parse_url(url)


class FakeDNS:
    """A resolver whose answers the test changes; records the hosts asked for."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []
        self.asked_event = threading.Event()

    def __call__(self, host: str) -> list[str]:
        self.asked.append(host)
        self.asked_event.set()
        if host not in self.answers:
            raise OSError(f"NXDOMAIN {host}")
        return self.answers[host]


def test_matches_resolved_pairs_and_cidrs_only():
    dns = FakeDNS({"llm.example.test": ["192.0.2.10", "2001:db8::10"]})
    ep = ConfiguredEndpoints(resolver=dns)
    ep.configure(["https://llm.example.test", "http://nowhere.test:81"], ["203.0.113.0/24", "bogus"], 300)
    assert not ep.matches("192.0.2.10", 443)                # not resolved yet: nothing matches
    ep.refresh()
    assert ep.matches("192.0.2.10", 443) and ep.matches("2001:db8::10", 443)
    assert ep.matches("::ffff:192.0.2.10", 443)
    assert not ep.matches("192.0.2.10", 80)
    assert ep.matches("203.0.113.77", 1) and not ep.matches("203.0.114.1", 443)
    assert ep.resolve_failures == 1                         # nowhere.test


def test_failed_refresh_keeps_previous_addresses():
    dns = FakeDNS({"llm.example.test": ["192.0.2.10"]})
    ep = ConfiguredEndpoints(resolver=dns)
    ep.configure(["https://llm.example.test"], [], 300)
    ep.refresh()
    del dns.answers["llm.example.test"]
    ep.refresh()
    assert ep.matches("192.0.2.10", 443)


def test_thread_resolves_in_background_and_reload_re_resolves():
    dns = FakeDNS({"a.test": ["192.0.2.1"], "b.test": ["192.0.2.2"]})
    ep = ConfiguredEndpoints(resolver=dns)
    ep.configure(["https://a.test"], [], 3600)
    ep.start()
    try:
        wait_for(lambda: ep.matches("192.0.2.1", 443), timeout_s=3, interval_s=0.01)
        dns.asked.clear()
        ep.configure(["https://b.test"], [], 3600)          # the reload path: no waiting an hour
        wait_for(lambda: ep.matches("192.0.2.2", 443), timeout_s=3, interval_s=0.01)
        assert dns.asked == ["b.test"] and not ep.matches("192.0.2.1", 443)
    finally:
        ep.stop()


def test_periodic_refresh_picks_up_dns_changes():
    dns = FakeDNS({"a.test": ["192.0.2.1"]})
    ep = ConfiguredEndpoints(resolver=dns)
    ep.configure(["https://a.test"], [], 1)
    ep.start()
    try:
        wait_for(lambda: ep.matches("192.0.2.1", 443), timeout_s=3, interval_s=0.01)
        dns.answers["a.test"] = ["192.0.2.9"]
        wait_for(lambda: ep.matches("192.0.2.9", 443), timeout_s=5, interval_s=0.01)
    finally:
        ep.stop()


def test_a_hanging_resolver_never_blocks_matches():
    gate = threading.Event()

    def slow(host: str) -> list[str]:
        gate.wait(10)
        return ["192.0.2.1"]

    ep = ConfiguredEndpoints(resolver=slow)
    ep.configure(["https://a.test"], [], 300)
    ep.start()
    try:
        t0 = time.monotonic()
        for _ in range(1000):
            ep.matches("192.0.2.1", 443)
        assert time.monotonic() - t0 < 0.5
    finally:
        gate.set()
        ep.stop()
