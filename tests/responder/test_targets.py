"""Target selection and the freeze/kill rounds, on made-up /proc snapshots (no process touched)."""

from __future__ import annotations

import signal

from responder.act import carry_out
from responder.frozen import FrozenSession, thaw
from responder.procfs import TICK_NS, ProcInfo, Snapshot
from responder.targets import Guard, Request, select

BOOT = 1_000 * 1_000_000_000          # boot at t=1000 s (wall)
AGENT_UID, CASA_UID = 1000, 999


def p(pid: int, ppid: int, start_s: float = 10.0, uid: int = AGENT_UID, state: str = "S") -> ProcInfo:
    return ProcInfo(pid=pid, ppid=ppid, uid=uid, state=state, start_ticks=int(start_s * 1e9) // TICK_NS)


def seen(start_s: float) -> int:
    """Wall ns of a first sighting ``start_s`` after boot."""
    return BOOT + int(start_s * 1e9)


def host(*extra: ProcInfo) -> Snapshot:
    procs = [p(1, 0, 0, uid=0), p(2, 0, 0, uid=0), p(50, 2, 0, uid=0),          # init, kthreadd, a kthread
             p(100, 1, 1, uid=0), p(101, 100, 1, uid=0), p(102, 100, 1, uid=CASA_UID),  # supervisord, stages
             p(200, 1, 5, uid=0),                                                # the shell that ran the agent
             p(300, 200, 10), p(301, 300, 11), p(302, 301, 12),                  # agent root, bash, payload
             p(400, 200, 13),                                                    # outside any agent tree
             p(500, 1, 14, uid=CASA_UID), *extra]
    return Snapshot({x.pid: x for x in procs}, BOOT)


GUARD = Guard(protected_pids=frozenset({100}), protected_uids=frozenset({CASA_UID}))


def req(action: str = "kill_session", tgids: dict[int, float] | None = None, trigger: int = 302,
        anchor: int = 300, root: int = 300, dry_run: bool = False) -> Request:
    tg = tgids if tgids is not None else {300: 10.5, 301: 11.5, 302: 12.5}
    return Request(session_id=7, action=action, dry_run=dry_run, rules=("r",), trigger_tgid=trigger,
                   anchor=anchor, root=root, first_seen={k: seen(v) for k, v in tg.items()},
                   event_ts_ns=seen(12.6))


def test_the_session_tree_and_its_unreported_children_are_selected():
    sel = select(req(), host(p(303, 302, 12.7)), GUARD)
    assert sorted(t.pid for t in sel.targets) == [300, 301, 302, 303]
    assert sel.refused == []


def test_pid_1_casa_kernel_threads_and_outsiders_are_refused_even_when_named():
    named = {300: 10.5, 302: 12.5, 1: 0.5, 101: 1.5, 102: 1.5, 50: 0.5, 400: 13.5, 500: 14.5}
    sel = select(req(tgids=named), host(), GUARD)
    assert sorted(t.pid for t in sel.targets) == [300, 301, 302]
    assert dict(sel.refused) == {1: "pid 1 or invalid", 101: "CASA process", 102: "CASA process",
                                 50: "kernel thread", 400: "outside the session tree",
                                 500: "CASA user"}


def test_a_casa_child_below_the_anchor_is_still_refused():
    snap = host(p(310, 301, 12, uid=CASA_UID))
    sel = select(req(), snap, GUARD)
    assert (310, "CASA user") in sel.refused and 310 not in [t.pid for t in sel.targets]


def test_a_recycled_trigger_pid_is_refused():
    # 302 was first seen at 12.5 s; the process now holding pid 302 started at 40 s
    snap = host()
    snap.procs[302] = p(302, 301, 40)
    sel = select(req("kill_process"), snap, GUARD)
    assert sel.refused == [(302, "recycled pid (started after the session saw it)")]
    assert sel.targets == []


def test_a_recycled_pid_outside_the_tree_is_refused_for_the_session():
    snap = host()
    snap.procs[302] = p(302, 200, 40)                    # reused by a process of another tree
    sel = select(req(), snap, GUARD)
    assert (302, "outside the session tree") in sel.refused
    assert sorted(t.pid for t in sel.targets) == [300, 301]


def test_a_forged_anchor_refuses_the_whole_request():
    for anchor, why in ((1, "pid 1 or invalid"), (100, "CASA process"), (200, "outside the agent tree")):
        sel = select(req(anchor=anchor, tgids={400: 13.5}), host(), GUARD)
        assert sel.targets == [] and sel.refused == [(anchor, f"anchor: {why}")]


def test_a_forged_request_naming_an_outsider_with_the_real_anchor_signals_nothing():
    sent = []
    out = carry_out(req(tgids={400: 13.5}, anchor=300), GUARD, Recorder(sent), lambda: host(), clock())
    assert [pid for pid, _ in sent if pid == 400] == []
    assert (400, "outside the session tree") in out.refused


def test_kill_process_kills_only_the_trigger():
    sent = []
    out = carry_out(req("kill_process"), GUARD, Recorder(sent), lambda: host(p(303, 302, 12.7)), clock())
    assert sent == [(302, signal.SIGKILL)] and out.pids == [302]
    assert out.as_map()["latency_ms"] == 1.0


def test_kill_process_refuses_a_trigger_the_session_did_not_list():
    sent = []
    out = carry_out(req("kill_process", trigger=400), GUARD, Recorder(sent), lambda: host(), clock())
    assert sent == [] and out.refused == [(400, "not a process of the session")]


def test_a_dry_run_signals_nothing_and_says_what_it_would_do():
    sent = []
    out = carry_out(req(dry_run=True), GUARD, Recorder(sent), lambda: host(), clock())
    assert sent == [] and out.as_map()["pids"] == [300, 301, 302] and out.as_map()["dry_run"] is True


class ForkBomb:
    """A tree that forks a new child below the newest one on every /proc scan, unless stopped."""

    def __init__(self, sent: list) -> None:
        self.sent, self.next_pid, self.extra = sent, 600, [p(600, 302, 13)]

    def __call__(self) -> Snapshot:
        stopped = {pid for pid, sig in self.sent if sig == signal.SIGSTOP}
        newest = self.extra[-1]
        if newest.pid not in stopped:            # a running process forks again
            self.next_pid += 1
            self.extra.append(p(self.next_pid, newest.pid, 13 + self.next_pid / 1000))
        return host(*self.extra)


def test_kill_session_freezes_a_forking_tree_until_it_stops_growing_then_kills_it():
    sent: list = []
    bomb = ForkBomb(sent)
    out = carry_out(req(), GUARD, Recorder(sent), bomb, clock())
    stopped = [pid for pid, s in sent if s == signal.SIGSTOP]
    killed = [pid for pid, s in sent if s == signal.SIGKILL]
    every = {300, 301, 302, *(x.pid for x in bomb.extra)}
    assert set(stopped) == every and set(killed) == every
    assert sent.index((max(killed), signal.SIGKILL)) > max(sent.index((q, signal.SIGSTOP)) for q in stopped)
    assert out.errors == [] and out.rounds >= 2


def test_freeze_then_thaw_resumes_only_what_is_still_that_stopped_process():
    sent: list = []
    out = carry_out(req("freeze_session"), GUARD, Recorder(sent), lambda: host(), clock())
    assert sorted(t.pid for t in out.frozen) == [300, 301, 302]
    assert all(s == signal.SIGSTOP for _, s in sent)
    frozen = FrozenSession(7, 300, 300, [(t.pid, t.start_ticks) for t in out.frozen] + [(400, 0), (101, 0)])
    snap = host()
    for pid in (300, 301):
        snap.procs[pid] = p(pid, snap.procs[pid].ppid, 10 if pid == 300 else 11, state="T")
    snap.procs[302] = p(302, 301, 40, state="T")        # recycled while frozen
    cont: list = []
    res = thaw(frozen, Snapshot(snap.procs, BOOT), GUARD, Recorder(cont))
    assert res.resumed == [300, 301] and cont == [(300, signal.SIGCONT), (301, signal.SIGCONT)]
    assert dict(res.refused) == {302: "recycled pid (another process now)",
                                 400: "outside the session tree", 101: "CASA process"}


class Recorder:
    """A Sender that records (pid, signal) instead of signalling."""

    def __init__(self, sent: list) -> None:
        self.sent = sent

    def send(self, target: ProcInfo, sig: int) -> str | None:
        self.sent.append((target.pid, sig))
        return None

    def close(self) -> None:
        pass


def clock():
    """A clock 1 ms after the triggering event, then 1 ms later per call."""
    t = [seen(12.6)]

    def now() -> int:
        t[0] += 1_000_000
        return t[0]
    return now


def test_the_first_freeze_round_reads_only_the_named_pids_then_scans_for_children():
    sent: list = []
    full = host(p(303, 302, 12.7))
    reads: list[int] = []

    def lazy() -> Snapshot:
        def load(pid: int):
            reads.append(pid)
            return full.procs.get(pid)
        return Snapshot({}, BOOT, loader=load)
    out = carry_out(req(), GUARD, Recorder(sent), lambda: host(p(303, 302, 12.7)), clock(), lazy)
    first_round = [pid for pid, s in sent if s == signal.SIGSTOP][:3]
    assert sorted(first_round) == [300, 301, 302]                  # the named ones, first
    assert (303, signal.SIGSTOP) in sent and (303, signal.SIGKILL) in sent   # found by the scan
    assert set(reads) <= {300, 301, 302, 200, 1}                   # named pids and ancestors only
    assert out.as_map()["latency_ms"] == 1.0 and out.rounds == 3


def test_a_process_in_casas_own_service_cgroup_is_refused_even_outside_its_tree():
    guard = Guard(protected_pids=frozenset({100}), protected_uids=frozenset({CASA_UID}),
                  protected_cgroup="/system.slice/casa.service")
    snap = host()
    snap.cgroups.update({300: "/user.slice/agent", 301: "/user.slice/agent",
                         302: "/system.slice/casa.service"})      # a CASA helper that got here
    sel = select(req(), snap, guard)
    assert (302, "CASA cgroup") in sel.refused
    assert sorted(t.pid for t in sel.targets) == [300, 301]


def test_the_service_cgroup_is_read_from_the_unified_and_systemd_lines(tmp_path):
    from responder.procfs import read_service_cgroup
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "cgroup").write_text("4:memory:/x\n1:name=systemd:/system.slice/casa.service\n0::/\n")
    assert read_service_cgroup(7, str(tmp_path)) == "/system.slice/casa.service|/"
    assert read_service_cgroup(8, str(tmp_path)) is None


def test_without_a_known_leader_the_anchor_is_the_trigger_not_the_agent_root():
    d = {"session_id": 7, "ts_ns": 1, "action": "ALERT",
         "response": {"action": "kill_session", "dry_run": False, "rules": ["r"], "trigger_tgid": 302,
                      "leader_tgid": 0, "root": 300, "tgids": [[300, seen(10.5)], [302, seen(12.5)]]}}
    r = Request.from_decision(d)
    assert r.anchor == 302 and r.root == 300
    sel = select(r, host(p(303, 302, 12.7), p(310, 300, 12.8)), GUARD)
    assert sorted(t.pid for t in sel.targets) == [302, 303]          # not the root, not 310
    assert (300, "outside the session tree") in sel.refused
