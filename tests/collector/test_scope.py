"""collector/scope.py, the pure core: bootstrap from a /proc snapshot, provisional roots
confirmed or rejected (with what they forked meanwhile), in-tree profile matches that never
re-root, and the sweep."""

from __future__ import annotations

from agents import Matcher, Profile
from collector.decode import ST_PROVISIONAL, Decoded
from collector.proc_scan import ProcInfo
from collector.scope import DictTrackedMap, Entry, Scope

CLI = Profile(name="cli", kind="invocation",
              match=(Matcher(comm=("agent-cli",), argv_any=("-m",)),))
GATEWAY = Profile(name="gw", kind="runtime", match=(Matcher(exe_basename=("gatewayd",)),))
SELF = 999


def proc(pid: int, ppid: int, comm: str, exe: str = "", argv: tuple[str, ...] = ()) -> ProcInfo:
    return ProcInfo(pid=pid, ppid=ppid, uid=0, comm=comm, exe=exe, argv=argv)


def scope(kmap: DictTrackedMap | None = None, procs: dict[int, ProcInfo] | None = None) -> Scope:
    procs = procs or {}
    return Scope((CLI, GATEWAY), kmap if kmap is not None else DictTrackedMap(), SELF,
                 exe_reader=lambda pid: procs[pid].exe if pid in procs else "",
                 proc_reader=procs.get, clock=lambda: 7, monotonic=lambda: 100.0)


def exec_rec(tgid: int, root: int, argv: list[str], new_comm: str, provisional: bool = False,
             ret: int = 0, path: str = "") -> Decoded:
    path = path or "/usr/bin/" + argv[0].rsplit("/", 1)[-1]
    ev = {"kind": "exec", "ts_ns": 5, "tgid": tgid, "tid": tgid, "ppid": 1, "uid": 0, "comm": "bash",
          "root": root, "syscall": "execve", "path": path, "argv": argv, "argv_truncated": False,
          "ret": ret, "exe": path, "dirfd": -100, "flags": 0, "cap_eff": None, "seccomp": None}
    return Decoded(ev, ST_PROVISIONAL if provisional else 0, 0, new_comm)


def other(kind: str, tgid: int, root: int, provisional: bool = False) -> Decoded:
    ev = {"kind": kind, "ts_ns": 5, "tgid": tgid, "tid": tgid, "ppid": 1, "uid": 0, "comm": "x", "root": root}
    return Decoded(ev, ST_PROVISIONAL if provisional else 0, 0, "")


def test_bootstrap_finds_roots_and_descendants_but_never_itself():
    procs = {10: proc(10, 1, "gatewayd", "/opt/gatewayd"), 11: proc(11, 10, "sh"), 12: proc(12, 11, "curl"),
             20: proc(20, 1, "bash"), SELF: proc(SELF, 11, "python")}
    kmap = DictTrackedMap()
    s = scope(kmap, procs)
    events = s.bootstrap(procs)
    assert [(e["kind"], e["tgid"], e["profile"], e["reason"], e["exe"]) for e in events] == [
        ("root", 10, "gw", "bootstrap", "/opt/gatewayd")]
    assert kmap.entries == {10: Entry(10, 0, False), 11: Entry(10, 1, False), 12: Entry(10, 2, False)}


def test_extra_pids_become_roots_of_the_given_profile():
    procs = {30: proc(30, 1, "python")}
    s = scope(procs=procs)
    assert [e["profile"] for e in s.bootstrap(procs, {30: "cli"})] == ["cli"]


def test_candidate_confirmed_by_full_match_keeps_its_children():
    kmap = DictTrackedMap({40: Entry(40, 0, True), 41: Entry(40, 1, True)})
    s = scope(kmap)
    out = s.handle(exec_rec(40, 40, ["agent-cli", "-m", "hi"], "agent-cli", provisional=True))
    assert [e["kind"] for e in out] == ["exec", "root"]
    assert out[1]["profile"] == "cli" and out[1]["reason"] == "exec"
    assert kmap.entries == {40: Entry(40, 0, False), 41: Entry(40, 1, False)}
    # a child's event recorded while still provisional is published once the root is confirmed
    assert s.handle(other("open", 41, 40, provisional=True))


def test_candidate_rejected_removes_it_and_what_it_forked():
    kmap = DictTrackedMap({40: Entry(40, 0, True), 41: Entry(40, 1, True), 50: Entry(50, 0, False)})
    s = scope(kmap)
    assert s.handle(exec_rec(40, 40, ["agent-cli", "--help"], "agent-cli", provisional=True)) == []
    assert kmap.entries == {50: Entry(50, 0, False)}
    assert s.handle(other("fork", 41, 40, provisional=True)) == []
    assert s.dropped_events == 1


def test_profile_matching_exec_inside_a_tracked_tree_is_never_a_root():
    # a fake `agent-cli -m x` started by a tool of the gateway's tree: same tree, same root
    kmap = DictTrackedMap({10: Entry(10, 0, False), 60: Entry(10, 3, False)})
    s = scope(kmap)
    s.roots[10] = "gw"
    out = s.handle(exec_rec(60, 10, ["agent-cli", "-m", "x"], "agent-cli"))
    assert [(e["kind"], e["tgid"], e["root"]) for e in out] == [("exec", 60, 10)]
    assert kmap.entries == {10: Entry(10, 0, False), 60: Entry(10, 3, False)}
    assert s.roots == {10: "gw"}
    # its own later events still belong to the gateway tree
    assert [e["root"] for e in s.handle(other("open", 60, 10))] == [10]


def test_in_tree_match_after_the_root_exited_is_still_not_a_root():
    # a detached leftover of a tree whose root is gone: still that tree, never a new root
    kmap = DictTrackedMap({61: Entry(10, 2, False)})
    s = scope(kmap)
    s.roots[10] = "gw"
    s.handle(other("exit", 10, 10))
    out = s.handle(exec_rec(61, 10, ["agent-cli", "-m", "x"], "agent-cli"))
    assert [(e["kind"], e["root"]) for e in out] == [("exec", 10)]
    assert kmap.entries == {61: Entry(10, 2, False)} and s.roots == {}


def test_the_root_re_executing_in_place_stays_the_same_root():
    # #!/usr/bin/env node: the confirmed root execs env, then node; one root, one profile
    kmap = DictTrackedMap({40: Entry(40, 0, False)})
    s = scope(kmap)
    s.roots[40] = "cli"
    for argv, comm in ((["/usr/bin/env", "node", "agent-cli", "-m", "hi"], "env"),
                       (["agent-cli", "-m", "hi"], "agent-cli"),
                       (["gatewayd"], "gatewayd")):     # even into another profile's image
        out = s.handle(exec_rec(40, 40, argv, comm))
        assert [(e["kind"], e["root"]) for e in out] == [("exec", 40)]
    assert s.roots == {40: "cli"} and kmap.entries == {40: Entry(40, 0, False)}


def test_an_untracked_process_matching_a_profile_still_becomes_a_root():
    kmap = DictTrackedMap({10: Entry(10, 0, False), 70: Entry(70, 0, True)})
    s = scope(kmap)
    s.roots[10] = "gw"
    out = s.handle(exec_rec(70, 70, ["agent-cli", "-m", "x"], "agent-cli", provisional=True))
    assert [(e["kind"], e["root"]) for e in out] == [("exec", 70), ("root", 70)]
    assert s.roots == {10: "gw", 70: "cli"} and kmap.entries[70] == Entry(70, 0, False)


def test_failed_exec_never_starts_a_root():
    s = scope(DictTrackedMap({60: Entry(10, 3, False)}))
    s.roots[10] = "gw"
    out = s.handle(exec_rec(60, 10, ["agent-cli", "-m", "x"], "", ret=-2))
    assert [e["kind"] for e in out] == ["exec"]


def test_root_exit_forgets_the_root():
    s = scope()
    s.roots[10] = "gw"
    assert s.handle(other("exit", 10, 10))
    assert 10 not in s.roots


def test_sweep_settles_a_provisional_root_whose_exec_was_lost():
    procs = {70: proc(70, 1, "agent-cli", "/usr/bin/agent-cli", ("agent-cli", "-m", "q")),
             80: proc(80, 1, "agent-cli", "/usr/bin/agent-cli", ("agent-cli",))}
    kmap = DictTrackedMap({70: Entry(70, 0, True), 71: Entry(70, 1, True), 80: Entry(80, 0, True)})
    s = scope(kmap, procs)
    count, events = s.sweep()
    assert (count, events) == (3, [])          # first sight: the exec record may still be queued
    count, events = s.sweep()
    assert [(e["tgid"], e["profile"]) for e in events] == [(70, "cli")]
    assert kmap.entries == {70: Entry(70, 0, False), 71: Entry(70, 1, False)}


def test_child_forked_during_confirmation_stays_after_the_root_exits():
    kmap = DictTrackedMap({40: Entry(40, 0, True)})
    s = scope(kmap)
    s.handle(exec_rec(40, 40, ["agent-cli", "-m", "hi"], "agent-cli", provisional=True))
    kmap.set(41, Entry(40, 1, True))          # the kernel inserted it after confirm() walked the map
    assert s.handle(other("exit", 40, 40))
    assert s.handle(other("open", 41, 40, provisional=True))
    s.sweep()
    assert kmap.entries == {40: Entry(40, 0, False), 41: Entry(40, 1, False)}


def test_script_rejected_at_first_exec_is_confirmed_at_its_second():
    # #!/usr/bin/env node: the script exec does not match, the node exec does
    kmap = DictTrackedMap({90: Entry(90, 0, True)})
    s = scope(kmap)
    s.alive = lambda pid: True
    first = exec_rec(90, 90, ["/usr/bin/env", "node", "/opt/x/gw", "serve"], "gw", provisional=True,
                     path="/opt/x/gw")
    second = exec_rec(90, 90, ["agent-cli", "-m", "hello"], "agent-cli", provisional=True)
    assert s.handle(first) == []
    assert s.handle(other("open", 90, 90, provisional=True)) == []     # held, not dropped
    out = s.handle(second)
    assert [e["kind"] for e in out] == ["exec", "open", "exec", "root"]
    assert out[0]["path"] == "/opt/x/gw" and out[2]["path"] == "/usr/bin/agent-cli"
    assert kmap.entries == {90: Entry(90, 0, False)}
    assert s.dropped_events == 0


def test_script_whose_interpreter_never_matches_is_rejected_at_the_sweep():
    kmap = DictTrackedMap({90: Entry(90, 0, True), 91: Entry(90, 1, True)})
    s = scope(kmap)
    s.handle(exec_rec(90, 90, ["/usr/bin/env", "node", "/opt/x/tool"], "tool", provisional=True,
                      path="/opt/x/tool"))
    s.handle(other("fork", 90, 90, provisional=True))
    s.sweep()
    assert kmap.entries == {90: Entry(90, 0, True), 91: Entry(90, 1, True)}   # still undecided
    del kmap.entries[90], kmap.entries[91]                                     # the tree exits
    s.sweep()
    assert 90 not in s.doubtful and 90 in s.rejected and s.dropped_events == 2


def test_a_relative_root_exec_is_matched_and_reported_by_its_absolute_path():
    kmap = DictTrackedMap({80: Entry(80, 0, True)})
    s = scope(kmap)
    rec = exec_rec(80, 80, ["./agent-cli", "-m", "x"], "agent-cli", provisional=True, path="./agent-cli")
    rec.event["abspath"] = "/opt/tools/agent-cli"
    out = s.handle(rec)
    assert [(e["kind"], e.get("exe")) for e in out] == [("exec", "./agent-cli"), ("root", "/opt/tools/agent-cli")]
