"""The benchmark's null stage heartbeats with counters its stand-in stage declares, so the bench
log carries no 'counters not declared' warning (bench/relay.py)."""

from __future__ import annotations

from bench.relay import stand_in_counters
from bus import Subscriber
from bus.counters import for_stage


def test_every_relay_counter_is_declared_by_the_stage_it_stands_in_for() -> None:
    sub = Subscriber(None, ["collector.event"])
    for stage in ("sessionizer", "analyzer"):
        counters = stand_in_counters(stage, sub)
        assert counters and for_stage(stage).undeclared(counters) == [], stage
