"""When the scenarios' sandbox cannot be built, the suite and its tests say why (they skip)."""

from __future__ import annotations

import os

import pytest

from evaluation.attacks import runner


def test_a_root_that_is_not_a_mount_point_is_named_as_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os.path, "ismount", lambda p: p != "/")
    why = runner.sandbox_unavailable()
    assert why is not None and "mount point" in why and "chroot" in why


def test_a_mounted_root_builds_the_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os.path, "ismount", lambda p: True)
    assert runner.sandbox_unavailable() is None
