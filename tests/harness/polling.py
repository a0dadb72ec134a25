"""Waiting for something another process or thread does: poll with a deadline.

A timed-out wait raises AssertionError naming what was awaited (and, where the caller can say,
what was seen instead), so a failing test tells why without a debugger.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_for"]

T = TypeVar("T")


def wait_for(pred: Callable[[], T], timeout_s: float = 15.0, what: str | Callable[[], str] = "condition",
             interval_s: float = 0.05) -> T:
    """The first truthy value of ``pred()`` within ``timeout_s``; AssertionError otherwise.

    ``what`` names the condition; a callable is asked only on timeout (to say what was seen)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
