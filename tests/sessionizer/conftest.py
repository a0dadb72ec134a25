"""Fixtures for the sessionizer tests: settings from real config files, a core, a gateway tree."""

from __future__ import annotations

import pytest

from sessionizer.connect_filter import ConfiguredEndpoints
from sessionizer.core import Sessionizer
from sessionizer.settings import Settings, load_settings
from tests.sessionizer.synthetic_events import CONFIG, GATEWAY, HOMES, RULES, S, SCHEMA2_KINDS, T0, WORKER, Events, \
    lifecycle_of


@pytest.fixture
def ev() -> Events:
    return Events()


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings(RULES, CONFIG)


@pytest.fixture
def core(settings: Settings) -> Sessionizer:
    return Sessionizer(settings, home_of=HOMES.get)


@pytest.fixture
def gateway_core(core: Sessionizer, ev: Events) -> Sessionizer:
    """A core with a bootstrapped gateway (1000) and its spawn-broker worker (1001)."""
    core.handle(ev.root(GATEWAY, 1, "openclaw-gateway"), T0)
    core.handle(ev.exec(WORKER, GATEWAY, "/usr/bin/node", ["node", "/x/spawn-broker/worker.js"],
                        comm="openclaw-gatewa"), T0)
    closed = lifecycle_of(core.tick(T0 + 6 * S))        # the worker's start idles out
    assert [m["state"] for m in closed] == ["closed"]
    return core


@pytest.fixture
def endpoint_gateway(settings: Settings, ev: Events) -> Sessionizer:
    """A core with a gateway root (1000) whose configured endpoints (settings' LLM provider URLs
    and known CIDRs) resolve to 192.0.2.10, without DNS."""
    endpoints = ConfiguredEndpoints(resolver=lambda host: ["192.0.2.10"])
    endpoints.configure(settings.llm_provider_urls, settings.known_cidrs, 300)
    endpoints.refresh()
    core = Sessionizer(settings, endpoints)
    core.handle(ev.root(GATEWAY, 1, "openclaw-gateway"), T0)
    return core


@pytest.fixture
def schema2_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The contract's new event kinds in the bus tables, where they are not there yet."""
    from bus import events
    for kind, fields in SCHEMA2_KINDS.items():
        if kind not in events.KIND_FIELDS:
            monkeypatch.setitem(events.KIND_FIELDS, kind, fields)
