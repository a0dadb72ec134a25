"""Shared fixtures of the sink tests: a fixed local time zone, and analyzer-shaped maps."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest


def _local_time(monkeypatch: pytest.MonkeyPatch, tz: str) -> Iterator[None]:
    """The process's local time zone is ``tz`` for one test (libc re-reads TZ), then restored."""
    monkeypatch.setenv("TZ", tz)
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def chicago(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time = America/Chicago, so RFC3339 offsets are not Z."""
    yield from _local_time(monkeypatch, "America/Chicago")


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time = UTC: RFC3339 times end in Z."""
    yield from _local_time(monkeypatch, "UTC")
