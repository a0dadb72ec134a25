"""One evaluation session through OpenClaw's gateway for a test module: the harness test runs it
without CASA, the CI subset with the real stack; both need root (the agent runs as casa-agent)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from evaluation.runner import EvalSession


@contextmanager
def gateway_session(tmp_path_factory: pytest.TempPathFactory, casa: str, needs: str) -> Iterator[EvalSession]:
    """An EvalSession in gateway mode (``casa``: start | none), or the test skipped with ``needs``
    (what root is for) when not root."""
    if os.geteuid() != 0:
        pytest.skip(f"needs root: {needs}")
    with EvalSession(Path(tmp_path_factory.mktemp(f"eval-{casa}")), casa=casa, modes=("gateway",)) as ev:
        yield ev
