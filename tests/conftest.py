"""Shared test markers and skip logic.

``root``   needs root (eBPF, chown to the casa group, running a subprocess as another user);
           skipped with a reason when the tests do not run as root.
``stack``  starts the real stack under supervisord; skipped when supervisord is not installed.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parent.parent
SUPERVISORD = Path(sys.executable).parent / "supervisord"


def _is_root() -> bool:
    return os.geteuid() == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Turn the ``root`` and ``stack`` markers into skips that say why."""
    skip_root = pytest.mark.skip(reason=f"needs root (running as uid {os.geteuid()}); run `sudo make test`")
    have_supervisord = SUPERVISORD.exists() or shutil.which("supervisord") is not None
    skip_stack = pytest.mark.skip(reason="supervisord is not installed; run ./setup.sh")
    for item in items:
        if item.get_closest_marker("root") is not None and not _is_root():
            item.add_marker(skip_root)
        if item.get_closest_marker("stack") is not None and not have_supervisord:
            item.add_marker(skip_stack)
