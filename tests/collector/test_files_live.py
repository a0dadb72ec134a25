"""chmod, unlink, rename and truncate events: real processes under a real collector, the exact
bus events (docs/bus.md §5.10-§5.13), paths resolved in the kernel as an open's are.

The workload (signal_workload.py) runs as the tree's root and makes each call once; the calls
that only x86-64 has (chmod, unlink, rmdir, rename) are checked where they exist.
"""

from __future__ import annotations

import os
import platform

import pytest

from tests.collector.live import SIGNALS, live_fixture

pytestmark = pytest.mark.root
X86 = platform.machine() == "x86_64"


live = live_fixture("files")


def test_chmod_family(live):
    d = live.fresh()
    pid, f = live.workload(SIGNALS, "chmods", d)
    want = [
        {"syscall": "fchmod", "ret": 0, "dirfd": -100, "mode": 0o2750, "flags": 0, "fd": f["fd"],
         "path": f"{d}/b"},
        {"syscall": "fchmodat", "ret": 0, "dirfd": f["dfd"], "mode": 0o700, "flags": 0, "path": "c",
         "abspath": f"{d}/c"},
        {"syscall": "fchmodat2", "ret": 0, "dirfd": f["dfd"], "mode": 0o755, "flags": 0, "path": "e",
         "abspath": f"{d}/e"},
        {"syscall": "fchmodat", "ret": -2, "dirfd": -100, "mode": 0o777, "flags": 0, "path": f"{d}/nope"},
    ]
    if X86:
        want.insert(0, {"syscall": "chmod", "ret": 0, "dirfd": -100, "mode": 0o4755, "flags": 0,
                        "path": "a", "abspath": f"{d}/a"})
    assert live.own(pid, "chmod") == want
    assert os.stat(d / "a").st_mode & 0o7777 == (0o4755 if X86 else 0o644)


def test_unlink_family(live):
    d = live.fresh()
    pid, f = live.workload(SIGNALS, "unlinks", d)
    want = [
        {"syscall": "unlinkat", "ret": 0, "dirfd": f["dfd"], "flags": 0, "path": "u2", "abspath": f"{d}/u2"},
        {"syscall": "unlinkat", "ret": 0, "dirfd": f["dfd"], "flags": 0x200, "path": "d1", "abspath": f"{d}/d1"},
        {"syscall": "unlinkat", "ret": -2, "dirfd": -100, "flags": 0, "path": "gone", "abspath": f"{d}/gone"},
    ]
    if X86:
        want.insert(0, {"syscall": "unlink", "ret": 0, "dirfd": -100, "flags": 0, "path": "u1",
                        "abspath": f"{d}/u1"})
        want.insert(3, {"syscall": "rmdir", "ret": 0, "dirfd": -100, "flags": 0, "path": "d2",
                        "abspath": f"{d}/d2"})
    assert live.own(pid, "unlink") == want


def test_rename_family_resolves_both_paths(live):
    d = live.fresh()
    pid, f = live.workload(SIGNALS, "renames", d)
    want = [
        {"syscall": "renameat", "ret": 0, "dirfd": f["dfd"], "new_dirfd": f["sub"], "flags": 0,
         "path": "r2", "abspath": f"{d}/r2", "new_path": "r2-new", "new_abspath": f"{d}/sub/r2-new"},
        {"syscall": "renameat2", "ret": -17, "dirfd": f["dfd"], "new_dirfd": f["dfd"], "flags": 1,
         "path": "r3", "abspath": f"{d}/r3", "new_path": "taken", "new_abspath": f"{d}/taken"},
        {"syscall": "renameat2", "ret": 0, "dirfd": -100, "new_dirfd": -100, "flags": 0,
         "path": os.fsdecode(b"odd-\xff"), "abspath": os.fsdecode(os.fsencode(d) + b"/odd-\xff"),
         "new_path": "new\nline", "new_abspath": f"{d}/new\nline"},
    ]
    if X86:
        want.insert(0, {"syscall": "rename", "ret": 0, "dirfd": -100, "new_dirfd": -100, "flags": 0,
                        "path": "r1", "abspath": f"{d}/r1", "new_path": "sub/../r1-new",
                        "new_abspath": f"{d}/r1-new"})
    assert live.own(pid, "rename") == want
    assert os.path.exists(d / "new\nline")


def test_truncate_family_and_o_trunc_opens(live):
    d = live.fresh()
    pid, f = live.workload(SIGNALS, "truncates", d)
    assert live.own(pid, "truncate") == [
        {"syscall": "truncate", "ret": 0, "length": 7, "path": "t1", "abspath": f"{d}/t1"},
        {"syscall": "ftruncate", "ret": 0, "length": 0, "fd": f["fd"], "path": f"{d}/t2"},
        # the file was unlinked first: only its name is left, and the walk says so
        {"syscall": "ftruncate", "ret": 0, "length": 1, "fd": f["gone_fd"], "path": "t4", "abspath": ""},
    ]
    # an O_TRUNC open stays an open (the workload's first open of t3 created it, with O_CREAT)
    otrunc = [e for e in live.tree(pid, "open", path="t3")]
    assert [(e["flags"] & (os.O_TRUNC | os.O_WRONLY | os.O_CREAT), e["abspath"]) for e in otrunc] == [
        (os.O_TRUNC | os.O_WRONLY | os.O_CREAT, f"{d}/t3"), (os.O_TRUNC | os.O_WRONLY, f"{d}/t3")]
    assert otrunc[1]["ret"] == f["otrunc"] and "ino" in otrunc[1]
    assert live.counters()["unresolved_deleted"] >= 1


def test_shell_tools_report_what_they_did(live):
    """What an agent's shell does: coreutils chmod/mv/rm/truncate, relative to the cwd."""
    d = live.fresh("logs")
    (d / "app.log").write_text("x" * 64)
    pid, _ = live.run_root(f"cd {d} && chmod u+s app.log && mv app.log ../old.log && "
                           f"truncate -s 0 ../old.log && rm ../old.log")
    chmod = [e for e in live.tree(pid, "chmod") if e["comm"] == "chmod"]
    assert [(e["path"], e["abspath"], e["mode"] & 0o4000, e["ret"]) for e in chmod] == [
        ("app.log", f"{d}/app.log", 0o4000, 0)]
    assert [(e["path"], e["new_path"], e["new_abspath"], e["ret"]) for e in live.tree(pid, "rename")] == [
        ("app.log", "../old.log", f"{d.parent}/old.log", 0)]
    assert [(e["path"], e["length"], e["ret"]) for e in live.tree(pid, "truncate")] == [
        (f"{d.parent}/old.log", 0, 0)]
    assert [(e["path"], e["abspath"], e["ret"]) for e in live.tree(pid, "unlink")] == [
        ("../old.log", f"{d.parent}/old.log", 0)]
