"""Paths resolved in the kernel, file identity, and in-tree profile matches: the real collector,
real eBPF, real processes, exact events on the bus (docs/collector.md "Paths", docs/bus.md §5.9).

Every tree runs in its own directory under a scratch directory in /tmp whose real path (the
kernel reports dentry names) is what the expected values are built from. One collector for the
module; each test waits for its root's exit event, the tree's last, before asserting.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.collector.harness import TEST_PROFILE, TEST_ROOT_COMM, running_collector

pytestmark = pytest.mark.root

WORKLOAD = Path(__file__).resolve().parent / "workload.py"
W_CREAT = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
FAKE_CLI = "fake-openclaw"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("paths")
    scratch = Path(tempfile.mkdtemp(prefix="casa-paths-", dir="/tmp")).resolve()
    (scratch / "bin").mkdir()
    fake = scratch / "bin" / "openclaw"
    fake.write_text('#!/bin/sh\n/bin/true fake-child "$@"\n')
    fake.chmod(0o755)
    profiles = [{"name": TEST_PROFILE, "kind": "invocation", "match": [{"comm": [TEST_ROOT_COMM]}]},
                {"name": FAKE_CLI, "kind": "invocation",
                 "match": [{"exe_basename": ["openclaw"], "argv_contains": ["agent"], "argv_any": ["-m"]}]}]
    try:
        with running_collector(tmp, ringbuf_pages=1024, profiles=profiles) as (col, tap, root_bin):
            yield {"scratch": scratch, "col": col, "tap": tap, "root": root_bin, "fake": fake}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def fresh(env: dict[str, Any], *parts: str) -> Path:
    d = env["scratch"].joinpath(uuid.uuid4().hex[:8], *parts)
    d.mkdir(parents=True)
    return d


def run_root(env: dict[str, Any], script: str) -> tuple[int, str]:
    """``casa-test-root -c script``; waits for the root's exit event; (pid, stdout)."""
    p = subprocess.Popen([str(env["root"]), "-c", script], stdout=subprocess.PIPE)
    out, _ = p.communicate(timeout=60)
    env["tap"].wait_for(lambda e: e["kind"] == "exit" and e["tgid"] == p.pid, timeout_s=20)
    return p.pid, os.fsdecode(out)


def workload(env: dict[str, Any], *args: str) -> tuple[int, dict[str, Any]]:
    pid, out = run_root(env, "exec " + shlex.join([sys.executable, str(WORKLOAD), *args]))
    return pid, json.loads(out) if out.strip() else {}


def tree(env: dict[str, Any], pid: int, kind: str, **fields: Any) -> list[dict[str, Any]]:
    return [e for e in env["tap"].of(kind=kind, **fields) if e["root"] == pid]


def counters_after(env: dict[str, Any]) -> dict[str, Any]:
    """Heartbeat counters that include every event received so far."""
    return env["tap"].wait_heartbeat().counters


def test_relative_write_and_exec_resolve_against_the_cwd(env):
    d = fresh(env, "x", "d")
    pid, _ = run_root(env, f"cd {shlex.quote(str(d))} && printf '#!/bin/sh\\nexit 0\\n' > .x86 && "
                           f"chmod +x .x86 && ./.x86 && cd .. && ./d/.x86 && ../x/./d//.x86 && "
                           f"{shlex.quote(str(d))}/../d//.x86")
    target = f"{d}/.x86"
    st = os.stat(target)
    writes = tree(env, pid, "open", path=".x86")
    assert [(w["abspath"], w["flags"] & W_CREAT, w["ino"], w["dev"]) for w in writes] == [
        (target, W_CREAT, st.st_ino, st.st_dev)]
    execs = [(e["path"], e.get("abspath")) for e in tree(env, pid, "exec") if e["path"].endswith(".x86")]
    assert execs == [("./.x86", target), ("./d/.x86", target), ("../x/./d//.x86", target),
                     (f"{d}/../d//.x86", target)]
    # a #! script: mm->exe_file is its interpreter
    sh = os.stat(os.path.realpath("/bin/sh"))
    assert {(e["ino"], e["dev"]) for e in tree(env, pid, "exec") if e["path"].endswith(".x86")} == {
        (sh.st_ino, sh.st_dev)}


def test_absolute_normal_paths_carry_no_abspath(env):
    d = fresh(env)
    pid, _ = run_root(env, f": > {shlex.quote(str(d))}/plain; /bin/true")
    assert [e.get("abspath", "absent") for e in tree(env, pid, "open", path=f"{d}/plain")] == ["absent"]
    assert [e.get("abspath", "absent") for e in tree(env, pid, "exec", path="/bin/true")] == ["absent"]


def test_openat_with_a_real_dirfd(env):
    d = fresh(env, "calls")
    pid, facts = workload(env, "open_calls", str(d))
    got = {e["path"]: e for e in tree(env, pid, "open") if e["dirfd"] != -100 or e["path"].startswith(str(d))}
    via = os.stat(d / "via-openat")
    assert (got["via-openat"]["abspath"], got["via-openat"]["ino"], got["via-openat"]["dev"]) == (
        f"{d}/via-openat", via.st_ino, via.st_dev)
    assert got["via-openat2"]["abspath"] == f"{d}/via-openat2"
    assert got["via-openat2"]["ino"] == os.stat(d / "via-openat2").st_ino
    assert got["../escape"]["abspath"] == f"{d.parent}/escape" and "ino" not in got["../escape"]
    if f"{d}/via-open" in got:                                 # open(2): x86-64 only
        assert "abspath" not in got[f"{d}/via-open"]
        assert got[f"{d}/via-open"]["ino"] == os.stat(d / "via-open").st_ino
        assert "ino" not in got[f"{d}/missing/x"]


def test_dirfd_that_is_not_a_directory_or_not_open_is_unresolved(env):
    d = fresh(env)
    pid, facts = workload(env, "dirfd_errors", str(d))
    assert (facts["not_dir"], facts["bad_fd"]) == (-20, -9)
    got = {e["path"]: e for e in tree(env, pid, "open") if e["path"] in ("x", "y")}
    assert (got["x"]["abspath"], got["x"]["dirfd"], got["x"]["ret"]) == ("", facts["regular_fd"], -20)
    assert (got["y"]["abspath"], got["y"]["dirfd"], got["y"]["ret"]) == ("", 1000, -9)
    c = counters_after(env)
    assert c["unresolved_not_dir"] >= 1 and c["unresolved_bad_fd"] >= 1


def test_mount_crossings_under_the_scratch_directory(env):
    m = fresh(env, "mnt")
    inner = m / "sub" / "inner"
    mounted: list[Path] = []
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "casa-test", str(m)], check=True)
        mounted.append(m)
        inner.mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "casa-test", str(inner)], check=True)
        mounted.append(inner)
        (inner / "x").mkdir()
        pid, _ = run_root(env, f"cd {shlex.quote(str(m))}/sub && : > f && cd inner/x && : > g && "
                               f"./nope 2>/dev/null; true")
        f, g = tree(env, pid, "open", path="f"), tree(env, pid, "open", path="g")
        assert [(e["abspath"], e["dev"]) for e in f] == [(f"{m}/sub/f", os.stat(m / "sub" / "f").st_dev)]
        assert [(e["abspath"], e["dev"]) for e in g] == [(f"{inner}/x/g", os.stat(inner / "x" / "g").st_dev)]
        assert f[0]["dev"] != g[0]["dev"] != os.stat(env["scratch"]).st_dev
        assert [(e["abspath"], e["ret"]) for e in tree(env, pid, "exec", path="./nope")] == [
            (f"{inner}/x/nope", -2)]
    finally:
        for path in reversed(mounted):
            subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_chroot_sees_its_own_paths(env):
    d = fresh(env, "jail")
    pid, facts = workload(env, "chroot", str(d))
    assert facts["rel"] >= 0 and facts["abs"] >= 0
    rel, absolute = tree(env, pid, "open", path="f"), tree(env, pid, "open", path="/sub/g")
    assert [e["abspath"] for e in rel] == ["/sub/f"]
    assert [e.get("abspath", "absent") for e in absolute] == ["absent"]
    assert rel[0]["ino"] == os.stat(d / "sub" / "f").st_ino


def test_a_cwd_within_the_step_limit_resolves_and_40_levels_does_not(env):
    d = fresh(env)
    pid, _ = workload(env, "deep", str(d), "4", "20")
    want = str(d) + "".join(f"/{i:02d}dd" for i in range(20)) + "/f"
    assert [e["abspath"] for e in tree(env, pid, "open", path="f")] == [want]
    d = fresh(env)
    pid, facts = workload(env, "deep", str(d), "4", "40")
    assert facts["ret"] >= 0                     # the open worked; only its base is unknown
    events = tree(env, pid, "open", path="f")
    assert [(e["abspath"], e["ret"]) for e in events] == [("", facts["ret"])]
    assert "ino" in events[0]                    # the event is complete but for abspath
    assert counters_after(env)["unresolved_too_deep"] >= 1


def test_a_cwd_whose_names_exceed_the_area_is_unresolved(env):
    d = fresh(env)
    pid, facts = workload(env, "deep", str(d), "255", "17")   # 17 x 256 bytes > 4,096
    assert facts["ret"] >= 0
    assert [e["abspath"] for e in tree(env, pid, "open", path="f")] == [""]
    assert counters_after(env)["unresolved_too_long"] >= 1


def test_non_utf8_and_newline_directory_names_arrive_intact(env):
    d = fresh(env)
    odd = os.fsencode(d) + b"/bad-\xff\xfe/new\nline"
    os.makedirs(odd)
    script = b"cd " + shlex.quote(os.fsdecode(odd)).encode("utf-8", "surrogateescape") + b" && : > p\xfd && ./q\xfc 2>/dev/null; true"
    pid, _ = run_root(env, os.fsdecode(script))
    opens = [e for e in tree(env, pid, "open") if os.fsencode(e["path"]) == b"p\xfd"]
    assert [os.fsencode(e["abspath"]) for e in opens] == [odd + b"/p\xfd"]
    execs = [e for e in tree(env, pid, "exec") if os.fsencode(e["path"]) == b"./q\xfc"]
    assert [os.fsencode(e["abspath"]) for e in execs] == [odd + b"/q\xfc"]


def test_a_deleted_cwd_is_unresolved_and_the_event_still_published(env):
    d = fresh(env)
    pid, facts = workload(env, "deleted_cwd", str(d / "gone"))
    assert facts["ret"] == -2
    assert [(e["abspath"], e["ret"]) for e in tree(env, pid, "open", path="x")] == [("", -2)]
    assert counters_after(env)["unresolved_deleted"] >= 1


def test_paths_cut_at_the_kernel_buffer_are_flagged(env):
    d = fresh(env)
    pid, facts = workload(env, "long_paths", str(d))
    base = f"{d}/"
    # an open keeps 4,094 bytes: a 4,094-byte path arrives whole, 4,095 and 5,000 are cut there
    cut = [e for e in tree(env, pid, "open") if e["path"].startswith(base + "a")]
    assert [(len(e["path"]), e.get("path_truncated", False), e["ret"]) for e in cut] == [
        (4094, False, facts["open4094"]), (4094, True, facts["open4095"]), (4094, True, facts["open5000"])]
    execs = [e for e in tree(env, pid, "exec") if e["path"].startswith(base + "b")]   # keeps 4,095
    assert [(len(e["path"]), e.get("path_truncated", False)) for e in execs] == [(4095, False), (4095, True)]
    assert counters_after(env)["truncated_paths"] >= 3


def test_written_file_and_its_exec_through_a_symlink_and_a_hard_link_share_one_identity(env):
    d = fresh(env)
    pid, facts = workload(env, "identity", str(d))
    ident = (facts["ino"], facts["dev"])
    writes = tree(env, pid, "open", path=f"{d}/payload")
    assert [(e["ino"], e["dev"]) for e in writes if e["flags"] & os.O_WRONLY] == [ident]
    execs = {e["path"]: (e["ino"], e["dev"]) for e in tree(env, pid, "exec") if e["path"].startswith(str(d))}
    assert execs == {f"{d}/link": ident, f"{d}/hard": ident}
    read_only = [e for e in tree(env, pid, "open", path="/bin/true")]
    assert read_only and all("ino" not in e for e in read_only)   # no identity for plain reads


def test_execveat_relative_to_a_cloexec_dirfd(env):
    d = fresh(env)
    pid, _ = workload(env, "execveat_dirfd", str(d))
    execs = [e for e in tree(env, pid, "exec", syscall="execveat")]
    st = os.stat(d / "payload")
    assert [(e["path"], e["abspath"], e["ret"], e["ino"]) for e in execs] == [
        ("payload", f"{d}/payload", 0, st.st_ino)]


def test_fexecve_of_a_regular_file_resolves_the_file_itself(env):
    d = fresh(env)
    pid, _ = workload(env, "fexecve_file", str(d / "payload"))
    execs = [e for e in tree(env, pid, "exec", syscall="execveat") if e["ret"] == 0]
    assert [(e["path"], e["abspath"], e["ino"]) for e in execs] == [
        ("", f"{d}/payload", os.stat(d / "payload").st_ino)]


def test_memfd_and_unlinked_fd_execs_have_no_base(env):
    pid, _ = workload(env, "memfd", "fd")
    execs = [e for e in tree(env, pid, "exec", syscall="execveat") if e["ret"] == 0]
    assert [(e["path"], e["abspath"], e["exe"]) for e in execs] == [("", "", "memfd:payload (deleted)")]


def test_untracked_processes_produce_no_path_events(env):
    d = fresh(env)
    marker = f"untracked-{uuid.uuid4().hex[:8]}"
    subprocess.run(["/bin/sh", "-c", f"cd {shlex.quote(str(d))} && printf x > {marker} && ./{marker}; true"],
                   check=True)
    pid, _ = run_root(env, "true")          # a later tracked tree: everything before has arrived
    assert env["tap"].of(kind="exec", tgid=pid)
    assert not [e for e in env["tap"].events if marker in str(e.get("path", ""))]


def test_a_fake_agent_cli_inside_a_tracked_tree_is_not_a_root(env):
    """`openclaw agent -m hi` started in the background by a tracked process: no root, its events
    and its children's stay in the tree, and what the tree runs afterwards too."""
    tap, fake = env["tap"], str(env["fake"])
    pid, _ = run_root(env, f"{shlex.quote(fake)} agent -m hi & wait; /bin/true after-fake")
    fake_exec = [e for e in tap.of(kind="exec", path=fake) if e["root"] == pid]
    assert len(fake_exec) == 1 and fake_exec[0]["ret"] == 0
    fake_pid = fake_exec[0]["tgid"]
    assert tap.of(kind="root", tgid=fake_pid) == []
    assert [r["tgid"] for r in tap.events if r["kind"] == "root" and r["tgid"] != pid
            and r.get("profile") == FAKE_CLI and r["ts_ns"] >= fake_exec[0]["ts_ns"]] == []
    children = [e for e in tap.of(kind="exec", path="/bin/true") if e["argv"][1:2] == ["fake-child"]
                and e["ppid"] == fake_pid]
    assert [(c["root"], c["argv"]) for c in children] == [(pid, ["/bin/true", "fake-child", "agent", "-m", "hi"])]
    after = [e for e in tap.of(kind="exec", path="/bin/true") if e["argv"] == ["/bin/true", "after-fake"]]
    assert [e["root"] for e in after] == [pid]


def test_the_same_fake_cli_started_outside_any_tree_is_a_root(env):
    tap = env["tap"]
    p = subprocess.Popen([str(env["fake"]), "agent", "-m", "hi"])
    p.wait(30)
    tap.wait_for(lambda e: e["kind"] == "exit" and e["tgid"] == p.pid)
    assert [(r["profile"], r["reason"]) for r in tap.of(kind="root", tgid=p.pid)] == [(FAKE_CLI, "exec")]


def test_a_root_started_by_a_relative_path_is_reported_with_its_absolute_exe(env):
    tap, fake = env["tap"], env["fake"]
    p = subprocess.Popen(["./openclaw", "agent", "-m", "hi"], cwd=fake.parent)
    p.wait(30)
    tap.wait_for(lambda e: e["kind"] == "exit" and e["tgid"] == p.pid)
    assert [(e["path"], e["abspath"]) for e in tap.of(kind="exec", tgid=p.pid) if e["path"] == "./openclaw"] == [
        ("./openclaw", str(fake))]
    assert [(r["profile"], r["exe"]) for r in tap.of(kind="root", tgid=p.pid)] == [(FAKE_CLI, str(fake))]
