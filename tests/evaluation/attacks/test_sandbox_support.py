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


def _in_a_chroot() -> bool:
    """This process's / is not init's (a plain chroot, such as the fresh-machine checker's)."""
    try:
        mine, init = Path("/").stat(), Path("/proc/1/root/.").stat()
    except OSError:                      # /proc/1/root is root's to read: unknown, not a chroot
        return False
    return (mine.st_dev, mine.st_ino) != (init.st_dev, init.st_ino)


def test_this_machine_builds_the_sandbox() -> None:
    """On a real machine or VM (CI) the sandbox must build, or the attack and live field tests
    would only skip; inside a plain chroot it cannot, and that is the reason given."""
    if _in_a_chroot():
        pytest.skip("inside a chroot, / is not a mount point: the sandboxed tests skip with that reason")
    assert runner.root_is_a_mount() and runner.sandbox_unavailable() is None
