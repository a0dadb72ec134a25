"""Context that follows the tree (issue 11 items 7, 8; issue 14 bootstrap): tree ids, shards,
parent sessions, writes held across a quiet runtime, sessions of roots found at start-up."""

from __future__ import annotations

import dataclasses
from typing import Any

from sessionizer.core import Sessionizer
from sessionizer.sessions import SessionIds

from tests.sessionizer.synthetic_events import CLI, GATEWAY, HOMES, S, T0, WORKER, Events, cli_argv, events_of, \
    feed, lifecycle_of

NODE = "/usr/bin/node"
OC = "/opt/oc/lib/node_modules/openclaw"
WRAP = ["/bin/bash", "--noprofile", "--norc", "-c", "cmd"]
O_WRITE = 0o1 | 0o100 | 0o1000


def gateway(ev: Events, uid: int = 1000, tgid: int = GATEWAY, cap_eff: int | None = None,
            reason: str = "exec") -> list[dict[str, Any]]:
    root = ev.root(tgid, 1, "openclaw-gateway", exe=NODE, reason=reason,
                   argv=["node", f"{OC}/openclaw.mjs", "gateway"])
    root["uid"] = uid
    if cap_eff is not None:
        root["cap_eff"] = cap_eff
    return [root]


def write_then_run(ev: Events, t: float, gap: float, path: str = "/tmp/d/p.sh") -> list[dict[str, Any]]:
    """A tool writes ``path`` (its shell's redirect), idles ``gap`` seconds, then runs it."""
    return [ev.exec(3000, GATEWAY, "/bin/bash", WRAP, ts=t),
            ev.open(3000, GATEWAY, path, ts=t + 0.1, flags=O_WRITE),
            ev.exec(3001, 3000, "/usr/bin/sleep", ["sleep", str(gap)], ts=t + 0.2),
            ev.exit(3001, 3000, ts=t + 0.2 + gap),
            ev.exec(3002, 3000, path, [path], ts=t + 0.3 + gap)]


def test_events_and_lifecycle_carry_the_tree_and_its_shard(core, ev):
    out = feed(core, gateway(ev) + [ev.exec(3000, GATEWAY, "/usr/bin/ls", ["ls"], ts=1)])
    (opened,) = lifecycle_of(out)
    root = core.tracker.roots[GATEWAY]
    assert root.tree_id > 0 and root.shard == root.tree_id
    assert (opened["tree_id"], opened["shard"], opened["parent_session_id"]) == (root.tree_id, root.tree_id, None)
    assert opened["root_uid"] == 1000 and opened["root_cap_eff"] is None
    (e,) = events_of(out)
    assert (e["tree_id"], e["shard"]) == (root.tree_id, root.tree_id)


def test_a_cli_takes_the_shard_of_the_newest_gateway_of_its_user(core, ev):
    feed(core, gateway(ev, uid=1000) + gateway(ev, uid=1000, tgid=1500) + gateway(ev, uid=0, tgid=1600))
    newest = core.tracker.roots[1500]
    mine = lifecycle_of(feed(core, [ev.exec(CLI, 500, "/opt/nvm/v24/bin/node", cli_argv(), ts=1)]))[0]
    other = ev.exec(CLI + 1, 500, "/opt/nvm/v24/bin/node", cli_argv(), ts=2)
    other["uid"] = 4242
    alone = lifecycle_of(feed(core, [other]))[0]
    assert mine["shard"] == newest.shard != mine["tree_id"]
    assert alone["shard"] == alone["tree_id"] == core.tracker.roots[CLI + 1].tree_id
    # the parity window: the gateway's events in the CLI session ride the CLI's shard
    (e,) = events_of(feed(core, [ev.exec(3000, 1500, "/usr/bin/ls", ["ls"], ts=3)]))
    assert (e["session_id"], e["shard"], e["tree_id"]) == (mine["session_id"], newest.shard, newest.tree_id)


def test_a_write_an_idle_gap_and_the_exec_chain_two_sessions_of_one_tree(core, ev):
    """Issue 11 item 7: the activity session closes on its 5 s gap; the exec opens the next
    one, which names the first as its parent, in the same tree and shard."""
    out = feed(core, gateway(ev) + write_then_run(ev, 10, 7))
    first, closed, second = lifecycle_of(out)
    assert (first["state"], closed["state"], second["state"]) == ("opened", "closed", "opened")
    assert closed["session_id"] == first["session_id"]
    assert second["parent_session_id"] == first["session_id"]
    assert (second["tree_id"], second["shard"]) == (first["tree_id"], first["shard"])
    write = next(e for e in events_of(out) if e["kind"] == "open")
    run = events_of(out)[-1]
    assert (write["session_id"], run["session_id"]) == (first["session_id"], second["session_id"])


def test_no_parent_beyond_the_history_horizon(settings, ev):
    core = Sessionizer(dataclasses.replace(settings, history_horizon_s=20.0), home_of=HOMES.get)
    out = feed(core, gateway(ev) + write_then_run(ev, 10, 30))
    assert lifecycle_of(out)[-1]["parent_session_id"] is None


def test_a_detached_delayed_run_lands_in_a_child_session_of_the_invocation(core, ev):
    """Issue 11 item 8: ``setsid nohup sh -c 'sleep 4; /tmp/d/p.sh' &`` as the last command of
    an invocation: the payload runs after the CLI's session closed, in a new activity session
    of the same tree whose parent is the invocation session."""
    seq = [ev.exec(CLI, 500, "/opt/nvm/v24/bin/node", cli_argv(), ts=1),
           ev.fork(CLI, 500, 3000, ts=2), ev.exec(3000, CLI, "/bin/bash", ["bash", "-c", "x"], ts=2),
           ev.open(3000, CLI, "/tmp/d/p.sh", ts=2.1, flags=O_WRITE),
           ev.fork(3000, CLI, 3001, ts=2.2),
           ev.exec(3001, 3000, "/usr/bin/setsid", ["setsid", "nohup", "sh", "-c", "sleep 4; /tmp/d/p.sh"], ts=2.3),
           ev.exec(3001, 3000, "/usr/bin/nohup", ["nohup", "sh", "-c", "sleep 4; /tmp/d/p.sh"], ts=2.31),
           ev.exec(3001, 3000, "/bin/sh", ["sh", "-c", "sleep 4; /tmp/d/p.sh"], ts=2.32),
           ev.fork(3001, 3000, 3002, ts=2.33),
           ev.exec(3002, 3001, "/usr/bin/sleep", ["sleep", "4"], ts=2.34),
           ev.exit(3000, CLI, ts=2.4), ev.exit(CLI, 500, ts=2.5),
           ev.exit(3002, 3001, ts=6.34),
           ev.fork(3001, 1, 3003, ts=6.35),                       # reparented: ppid 1 now
           ev.exec(3003, 3001, "/tmp/d/p.sh", ["/tmp/d/p.sh"], ts=6.36)]
    out = feed(core, seq)
    states = [(m["state"], m["origin"], m["session_id"]) for m in lifecycle_of(out)]
    inv = states[0][2]
    assert states[:2] == [("opened", "invocation", inv), ("closed", "invocation", inv)]
    assert states[2][:2] == ("opened", "activity")
    child = lifecycle_of(out)[2]
    assert child["parent_session_id"] == inv and child["tree_id"] == lifecycle_of(out)[0]["tree_id"]
    assert child["shard"] == lifecycle_of(out)[0]["shard"]
    run = events_of(out)[-1]
    assert run["path"] == "/tmp/d/p.sh" and run["session_id"] == child["session_id"]


def test_a_gateway_write_tool_call_is_not_lost_to_a_quiet_pause(core, ev):
    """The write tool writes in-process (role agent) with no session open; 7 s later a tool
    runs the file. The visible lookback (5 s) has let it go, but it joins the turn hidden."""
    out = feed(core, gateway(ev) + [
        ev.open(GATEWAY, 1, "/tmp/d/p.sh", ts=10, flags=O_WRITE),
        ev.open(GATEWAY, 1, "/srv/notes.txt", ts=10.5),                    # a read: ages out
        ev.exec(3000, GATEWAY, "/bin/bash", WRAP, ts=17),
        ev.exec(3001, 3000, "/tmp/d/p.sh", ["/tmp/d/p.sh"], ts=17.1)])
    (opened,) = lifecycle_of(out)
    evs = events_of(out)
    assert [(e["kind"], e["path"], e.get("hidden")) for e in evs] == [
        ("open", "/tmp/d/p.sh", "runtime_background"), ("exec", "/bin/bash", None),
        ("exec", "/tmp/d/p.sh", None)]
    assert opened["created_ns"] == T0 + 17 * S           # a hidden write does not move it
    assert core.dropped["runtime_background"] == 1


def test_hidden_writes_join_a_cli_window_too(core, ev):
    out = feed(core, gateway(ev) + [
        ev.open(GATEWAY, 1, "/tmp/d/p.sh", ts=10, flags=O_WRITE),
        ev.open(GATEWAY, 1, "/srv/notes.txt", ts=10.5),
        ev.exec(CLI, 500, "/opt/nvm/v24/bin/node", cli_argv(), ts=16),
        ev.exec(3000, GATEWAY, "/tmp/d/p.sh", ["/tmp/d/p.sh"], ts=17)])
    (opened,) = lifecycle_of(out)
    assert [(e["kind"], e["session_id"], e.get("hidden")) for e in events_of(out)] == [
        ("open", opened["session_id"], "runtime_background"), ("exec", opened["session_id"], None)]


def test_the_runtimes_own_state_writes_never_open_or_keep_a_session(core, ev):
    home = HOMES[1000]
    out = feed(core, gateway(ev) + [ev.open(GATEWAY, 1, f"{home}/.openclaw/s.sqlite", ts=t, flags=O_WRITE)
                                    for t in (10, 11, 12)])
    assert out == []                                      # held, hidden: they open nothing
    out = feed(core, [ev.exec(3000, GATEWAY, "/usr/bin/ls", ["ls"], ts=13)])
    evs = events_of(out)                                  # the same path thrice: the latest only
    assert [(e.get("hidden"), e["ts_ns"]) for e in evs] == [("runtime_noise", T0 + 12 * S), (None, T0 + 13 * S)]
    out = feed(core, [ev.open(GATEWAY, 1, f"{home}/.openclaw/s.sqlite", ts=t, flags=O_WRITE)
                      for t in (14, 16, 17.9)])
    assert [e["hidden"] for e in events_of(out)] == ["runtime_noise"] * 3
    # they do not keep the session open: it closes 5 s after the ls
    assert [m["state"] for m in lifecycle_of(core.tick(T0 + int(18.1 * S)))] == ["closed"]


def test_sessions_of_roots_found_at_start_up_are_incomplete(core, ev):
    cli = ev.root(CLI, 500, "openclaw-cli", ts=1, comm="node", argv=cli_argv())
    cli["uid"] = 0                                       # another user's CLI: no window
    (opened,) = lifecycle_of(feed(core, [cli]))
    assert opened["complete"] is False and opened["incomplete_reason"] == "bootstrap"
    feed(core, gateway(ev, reason="bootstrap"))
    first = lifecycle_of(feed(core, [ev.exec(3000, GATEWAY, "/usr/bin/ls", ["ls"], ts=2)]))[0]
    assert first["complete"] is False and first["incomplete_reason"] == "bootstrap"
    late = ev.exec(3001, GATEWAY, "/usr/bin/ls", ["ls"], ts=700)        # beyond the horizon
    (opened,) = [m for m in lifecycle_of(feed(core, [late])) if m["state"] == "opened"]
    assert opened["complete"] is True and "incomplete_reason" not in opened


def test_an_exec_matched_root_is_complete_and_carries_its_capabilities(core, ev):
    cli = ev.exec(CLI, 500, "/opt/nvm/v24/bin/node", cli_argv(), ts=1, cap_eff=0x20)
    (opened,) = lifecycle_of(feed(core, [cli]))
    assert opened["complete"] is True and opened["root_cap_eff"] == 0x20
    feed(core, gateway(ev, uid=0, cap_eff=0x1 << 21))
    (gw,) = lifecycle_of(feed(core, [ev.exec(3000, GATEWAY, "/usr/bin/ls", ["ls"], ts=2)]))
    assert gw["root_cap_eff"] == 1 << 21 and gw["root_uid"] == 0 and gw["complete"] is True


def test_loss_says_why_a_session_is_incomplete(core, ev):
    feed(core, [ev.exec(CLI, 500, "/opt/nvm/v24/bin/node", cli_argv(), ts=1)])
    (flushed,) = lifecycle_of(feed(core, [ev.loss(3, ts=2)]))
    assert flushed["incomplete_reason"] == "loss"


def test_trees_and_parents_survive_a_restart_and_ids_are_never_reused(settings, ev):
    reserved: list[int] = []
    core = Sessionizer(settings, ids=SessionIds(100), home_of=HOMES.get,
                       tree_ids=SessionIds(500, reserve=reserved.append))
    out = feed(core, gateway(ev) + write_then_run(ev, 10, 7)[:4])
    first = lifecycle_of(out)[0]
    feed(core, [ev.exec(3005, GATEWAY, "/usr/bin/true", ["true"], ts=30)])   # closes the first
    state = core.checkpoint_state()
    fresh = Sessionizer(settings, ids=SessionIds(200), home_of=HOMES.get,
                        tree_ids=SessionIds(reserved[-1]))
    fresh.restore(state, T0 + 31 * S, alive=lambda t: True, clean=True)
    root = fresh.tracker.roots[GATEWAY]
    assert (root.tree_id, root.install_dir, root.home) == (first["tree_id"], OC, HOMES[1000]) == \
        (500, OC, HOMES[1000])
    out = feed(fresh, [ev.exec(3006, GATEWAY, "/usr/bin/true", ["true"], ts=40)])
    second = [m for m in lifecycle_of(out) if m["state"] == "opened"][0]
    assert second["parent_session_id"] is not None and second["tree_id"] == first["tree_id"]
    feed(fresh, [ev.root(7000, 1, "openclaw-gateway", reason="exec")])
    assert fresh.tracker.roots[7000].tree_id == reserved[-1] > 500


def test_tree_ids_continue_at_their_own_reservation_in_the_state_file(tmp_path):
    from sessionizer.checkpoint import TREE_IDS, StateStore
    store = StateStore(tmp_path)
    store.load()
    first = store.first_id(TREE_IDS)
    trees = SessionIds(first, reserve=store.reserve_trees)
    used = [trees.allocate() for _ in range(3)]
    again = StateStore(tmp_path)
    again.load()
    assert again.first_id(TREE_IDS) == again.doc[TREE_IDS] > max(used)


def test_a_checkpoint_from_before_trees_keeps_routing_by_session_id(gateway_core, ev, settings):
    feed(gateway_core, [ev.exec(3000, WORKER, "/usr/bin/ls", ["ls"], ts=10)])
    state = gateway_core.checkpoint_state()
    for s in state["sessions"]:
        for key in ("tree_id", "shard", "parent_session_id", "root_uid", "root_cap_eff", "incomplete_reason"):
            del s[key]
    for r in state["tracker"]["roots"]:
        for key in ("tree_id", "shard", "exe", "exe_ino", "exe_dev", "install_dir", "home", "cap_eff",
                    "bootstrap_ns", "last_session"):
            del r[key]
    for p in state["tracker"]["procs"]:
        del p["role"], p["shell"], p["runtime_image"]
        p["wrapper"] = p["routine"] = False
    del state["closed_sessions"]
    fresh = Sessionizer(settings, home_of=HOMES.get)
    assert fresh.restore(state, T0 + 11 * S, alive=lambda t: True, clean=True) == 1
    (s,) = list(fresh.sessions)
    assert s.shard == s.session_id and s.tree_id == fresh.tracker.roots[GATEWAY].tree_id > 0
    (e,) = events_of(feed(fresh, [ev.open(3000, WORKER, "/tmp/x", ts=11)]))
    assert e["shard"] == s.session_id
    assert fresh.tracker.get(GATEWAY).role == "agent"


def test_a_reused_tgid_is_a_new_tree_with_sessions_of_its_own(core, ev):
    out = feed(core, gateway(ev) + [ev.exec(3000, GATEWAY, "/usr/bin/ls", ["ls"], ts=1),
                                    ev.exit(3000, GATEWAY, ts=1.1), ev.exit(GATEWAY, 1, ts=1.2)])
    old = lifecycle_of(out)[0]
    again = ev.root(GATEWAY, 1, "openclaw-gateway", exe=NODE, reason="exec", ts=2,
                    argv=["node", f"{OC}/openclaw.mjs", "gateway"])
    out = feed(core, [again, ev.exec(3001, GATEWAY, "/usr/bin/ls", ["ls"], ts=3)])
    (new,) = lifecycle_of(out)                             # the old session still idles
    assert new["tree_id"] != old["tree_id"] and new["session_id"] != old["session_id"]
    assert new["parent_session_id"] is None
    assert events_of(out)[0]["session_id"] == new["session_id"]
