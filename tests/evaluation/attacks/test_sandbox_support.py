"""When the scenarios' sandbox cannot be built, the suite and its tests say why (they skip)."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation.attacks import runner

REAL = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n29 27 0:5 / /proc rw - proc proc rw\n"
CHROOT = "29 27 0:5 / /proc rw - proc proc rw\n31 27 0:6 / /dev rw - devtmpfs udev rw\n"


def test_the_mount_table_tells_a_mounted_root_from_a_chroot(tmp_path: Path) -> None:
    (tmp_path / "real").write_text(REAL)
    (tmp_path / "chroot").write_text(CHROOT)
    assert runner.root_is_a_mount(tmp_path / "real")
    assert not runner.root_is_a_mount(tmp_path / "chroot")


def test_a_root_that_is_not_a_mount_point_is_named_as_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "root_is_a_mount", lambda: False)
    why = runner.sandbox_unavailable()
    assert why is not None and "mount point" in why and "chroot" in why


def test_this_machine_builds_the_sandbox() -> None:
    """Where / is a mount point, as on every real machine or VM (CI), the sandbox must build, or
    the attack and live field tests would only skip. / that is not a mount point is a plain
    chroot (the fresh-machine checker's): the sandboxed tests skip there with that reason."""
    if not runner.root_is_a_mount():
        pytest.skip("/ is not a mount point (a plain chroot): the sandboxed tests skip with that reason")
    assert runner.sandbox_unavailable() is None
