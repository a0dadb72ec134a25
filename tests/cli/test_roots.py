"""casa status's AGENT ROOTS, from a roots file the sessionizer's own writer made."""

from __future__ import annotations

import os
from pathlib import Path

from cli.roots import NO_ROOT_HINT, read_roots, render_roots
from sessionizer.roots_file import FILE_NAME, RootsFile

ROOT = {"tgid": 4000, "profile": "openclaw-gateway", "uid": 0, "since_ns": 1_800_000_000 * 10**9,
        "tree_id": 3, "exe": "/usr/bin/node", "bootstrap": True, "open_sessions": 2}


def _write(d: Path, roots: list[dict], pid: int = 77, total: int | None = None) -> None:
    RootsFile(d / FILE_NAME, pid=pid).update(
        {"version": 1, "roots_total": len(roots) if total is None else total, "roots": roots}, 1)


def test_roots_are_listed_with_user_and_sessions(tmp_path: Path) -> None:
    _write(tmp_path, [ROOT, {**ROOT, "tgid": 4100, "profile": "openclaw-cli", "uid": 4_000_000,
                             "bootstrap": False, "open_sessions": 1,
                             "exe": "/home/u/.nvm/x\n[fake] line"}], total=3)
    view = read_roots(tmp_path, 77)
    assert view.warning == "" and view.total == 3
    lines = render_roots(view)
    assert lines[1] == "AGENT ROOTS watched: 3"
    assert lines[2].split() == ["PROFILE", "PID", "USER", "SINCE", "SESSIONS", "EXECUTABLE"]
    assert lines[3].split()[:3] == ["openclaw-gateway", "4000", "root"] and "(found running at start)" in lines[3]
    assert lines[3].split()[5] == "2"
    assert lines[4].split()[:3] == ["openclaw-cli", "4100", "4000000"]        # no passwd entry: the uid
    assert lines[4].endswith(r"/home/u/.nvm/x\n[fake] line") and lines[5] == "... and 1 more"
    assert view.to_json()["agent_roots"][0]["user"] == "root"


def test_no_root_is_a_clear_warning(tmp_path: Path) -> None:
    _write(tmp_path, [])
    view = read_roots(tmp_path, 77)
    assert view.warning == NO_ROOT_HINT
    assert render_roots(view)[-1] == f"WARNING: {NO_ROOT_HINT}"


def test_a_missing_or_stale_file_says_so(tmp_path: Path) -> None:
    assert "missing" in read_roots(tmp_path, 77).warning
    _write(tmp_path, [ROOT], pid=12)
    stale = read_roots(tmp_path, 77)
    assert "from sessionizer pid 12, but pid 77 is running" in stale.warning
    (tmp_path / FILE_NAME).write_text("{broken")
    assert "cannot read" in read_roots(tmp_path, 77).warning
    os.unlink(tmp_path / FILE_NAME)
    (tmp_path / FILE_NAME).write_text("[1]")
    assert "not a roots file" in read_roots(tmp_path, None).warning
