"""CLI windows of several users: a runtime tree's events join only its own user's CLI sessions."""

from __future__ import annotations

from sessionizer.core import Sessionizer

from tests.sessionizer.synthetic_events import CLI, GATEWAY, WORKER, S, T0, cli_argv, events_of, feed, lifecycle_of


def as_uid(event: dict, uid: int) -> dict:
    return {**event, "uid": uid}


def test_gateway_events_go_to_the_newest_cli_session_of_the_gateways_user(gateway_core, ev):
    core = gateway_core                                  # gateway root event: uid 1000
    mine = lifecycle_of(feed(core, [ev.exec(CLI, 500, "/opt/nvm/v24/bin/node", cli_argv(), ts=10)]))[0]
    roots = lifecycle_of(feed(core, [as_uid(ev.exec(CLI + 1, 501, "/opt/nvm/v24/bin/node",
                                                    cli_argv(), ts=11), 0)]))[0]
    assert roots["session_id"] > mine["session_id"]      # root's unrelated CLI is the newer one
    out = feed(core, [
        ev.exec(3000, WORKER, "/usr/bin/cat", ["cat", "x"], ts=12),
        ev.open(GATEWAY, 1, "/var/lib/agent/state.db", ts=12.1),
        as_uid(ev.exec(3001, WORKER, "/usr/bin/cat", ["cat", "/etc/shadow"], ts=12.2), 0),  # sudo'd
        as_uid(ev.exec(2200, CLI + 1, "/usr/bin/python3", ["python3"], ts=12.3), 0),   # root's own tree
    ])
    assert [e["session_id"] for e in events_of(out)] == [mine["session_id"]] * 3 + [roots["session_id"]]


def test_gateway_events_with_only_another_users_cli_open_take_the_no_cli_path(gateway_core, ev):
    core = gateway_core
    roots = lifecycle_of(feed(core, [as_uid(ev.exec(CLI, 500, "/opt/nvm/v24/bin/node", cli_argv(),
                                                    ts=10), 0)]))[0]
    assert feed(core, [ev.open(GATEWAY, 1, "/var/lib/agent/state.db", ts=11)]) == []   # held
    out = feed(core, [ev.exec(3000, WORKER, "/usr/bin/ls", ["ls"], ts=12)])
    (opened,) = lifecycle_of(out)
    assert opened["origin"] == "activity" and opened["profile"] == "openclaw-gateway"
    assert {e["session_id"] for e in events_of(out)} == {opened["session_id"]} != {roots["session_id"]}
    assert [e["tgid"] for e in events_of(out)] == [GATEWAY, 3000]     # the held open joined the turn


def test_a_checkpoint_without_uids_keeps_the_cli_window_for_every_user(gateway_core, ev, settings):
    """Checkpoints written before leader uids were recorded: such a session stays what it was,
    the window of every runtime tree."""
    feed(gateway_core, [as_uid(ev.exec(CLI, 500, "/opt/nvm/v24/bin/node", cli_argv(), ts=10), 0)])
    state = gateway_core.checkpoint_state()
    for s in state["sessions"]:
        del s["leader_uid"]
    for r in state["tracker"]["roots"]:
        del r["uid"]
    fresh = Sessionizer(settings)
    assert fresh.restore(state, T0 + 11 * S, alive=lambda t: True, clean=True) == 1
    (s,) = list(fresh.sessions)
    out = feed(fresh, [ev.exec(3000, WORKER, "/usr/bin/ls", ["ls"], ts=12)])
    assert [e["session_id"] for e in events_of(out)] == [s.session_id]
