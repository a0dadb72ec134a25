"""Shared fixtures of the sink tests: a fixed local time zone, and analyzer-shaped maps."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest


@pytest.fixture
def chicago(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time = America/Chicago, so RFC3339 offsets are not Z."""
    monkeypatch.setenv("TZ", "America/Chicago")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
