"""Issue 11's eight evasions, at the core: each must ALERT with the bundled rules.json.

Events are what the sessionizer publishes under bus schema 2 (docs/bus.md §5, §13):
``tree_id``/``shard`` on every event, ``abspath`` for relative paths, ``role`` on the runtime's
own execs, ``hidden`` on writes a noise filter hides. write_then_exec_same_path (5) +
write_then_exec_from_suspicious_path (4) = 9 = ALERT. Where the original window lost the pair,
the same sequence in history_mode "original" is shown not to alert (the hole this closes).
"""

from __future__ import annotations

from typing import Any

import pytest

from analyzer.core import Analyzer
from tests.analyzer.analyzer_sequences import CHECKOUT, Seq, decisions, in_mode, lifecycle, run_events
from policy import Policy

TREE = {"tree_id": 7, "shard": 7}
WTE = {"write_then_exec_same_path", "write_then_exec_from_suspicious_path"}
WRAPPER, TOOL, PAYLOAD = 200, 201, 202
BASH_C = ["/bin/bash", "--noprofile", "--norc", "-c", "cmd"]


def alerts(core: Analyzer, events: list[dict[str, Any]], sid: int = 1) -> dict[str, Any]:
    """Run ``events``; return the session's last decision, which must be an ALERT >= 9 with the
    two write->exec rules among everything that fired."""
    ds = decisions(run_events(core, events))
    fired = {r["name"] for d in ds for r in d["triggered_rules"]}
    assert ds and ds[-1]["action"] == "ALERT" and ds[-1]["score"] >= 9, ds
    assert WTE <= fired, fired
    assert ds[-1]["session_id"] == sid
    return ds[-1]


def tool_call(s: Seq, t: float, command: list[str]) -> None:
    """The runtime's bash -c wrapper (role wrapper) runs one command (a tool process)."""
    s.exec(t, WRAPPER, "/bin/bash", BASH_C, role="wrapper")
    s.exec(t + 0.01, TOOL, command[0], command, parent=WRAPPER)


@pytest.mark.parametrize("padding", [80, 10_000])
def test_1_padding_between_write_and_exec(core: Analyzer, original: Policy, padding: int):
    s = Seq(common=TREE)
    tool_call(s, 1, ["/usr/bin/printf", "payload"])
    s.write(1.02, WRAPPER, "/tmp/d/p.sh")
    tool_call(s, 2, ["/usr/bin/python3", "-c", "for i in range(80): open('/etc/hostname').close()"])
    for i in range(padding):
        s.open(2.02 + i * 1e-6, TOOL, "/etc/hostname")
    s.exec(3, PAYLOAD, "/tmp/d/p.sh", parent=WRAPPER)
    d = alerts(core, s.events)
    assert d["event"]["path"] == "/tmp/d/p.sh"
    assert not decisions(run_events(Analyzer(in_mode(original, "original")), s.events))


def test_2_relative_paths_resolved_by_the_kernel(core: Analyzer):
    """cd /tmp/d; printf ... > .x86; chmod +x .x86; ./.x86"""
    s = Seq(common=TREE)
    tool_call(s, 1, ["/usr/bin/printf", "x"])
    s.write(1.02, WRAPPER, ".x86", abspath="/tmp/d/.x86")
    s.exec(1.03, PAYLOAD, "./.x86", parent=WRAPPER, abspath="/tmp/d/.x86", exe="/tmp/d/.x86")
    d = alerts(core, s.events)
    assert d["context"]["execution"]["hidden_path_exec"] is True


def test_2_wget_output_then_relative_exec(core: Analyzer):
    """wget -O .x86 URL; ./.x86 (different processes, both relative to /tmp/d)."""
    s = Seq(common=TREE)
    tool_call(s, 1, ["/usr/bin/wget", "-O", ".x86", "http://127.0.0.1:8080/x"])
    s.open(1.02, TOOL, ".x86", 0x241, abspath="/tmp/d/.x86", ino=42, dev=2049)
    s.exec(2, PAYLOAD, "./.x86", parent=WRAPPER, abspath="/tmp/d/.x86", exe="/tmp/d/.x86",
           ino=42, dev=2049)
    alerts(core, s.events)


@pytest.mark.parametrize("name", ["id", "whoami"])
def test_3_renamed_binary_is_not_a_routine_exec(core: Analyzer, name: str):
    """The sessionizer gives routine roles only inside system directories, so the payload's
    exec carries no role; the analyzer also calls it a masquerade."""
    s = Seq(common=TREE)
    tool_call(s, 1, ["/usr/bin/cp", "/tmp/dl", f"/tmp/d/{name}"])
    s.write(1.02, TOOL, f"/tmp/d/{name}")
    s.exec(2, PAYLOAD, f"/tmp/d/{name}", [name], parent=WRAPPER)
    d = alerts(core, s.events)
    assert d["context"]["execution"]["masquerade"] is True


def test_4_shell_named_payload_replaces_the_wrapper(core: Analyzer):
    """``exec /tmp/d/sh`` as the tool's command: the wrapper's own tgid execs the payload."""
    s = Seq(common=TREE)
    tool_call(s, 1, ["/usr/bin/cp", "/tmp/dl", "/tmp/d/sh"])
    s.write(1.02, TOOL, "/tmp/d/sh")
    s.exec(2, WRAPPER, "/bin/bash", BASH_C, role="wrapper")
    s.exec(2.01, WRAPPER, "/tmp/d/sh", ["sh"])          # the same process, now the payload
    d = alerts(core, s.events)
    assert d["context"]["execution"]["masquerade"] is True


@pytest.mark.parametrize("path", ["/tmp/openclaw-state-locks-x/p", "/tmp/x/lib/node_modules/openclaw/p",
                                  "/tmp/x/.openclaw/p", "/tmp/d/.bashrc"])
def test_5_writes_hidden_by_noise_filters_are_still_remembered(core: Analyzer, path: str):
    s = Seq(common=TREE)
    tool_call(s, 1, ["/usr/bin/printf", "x"])
    s.write(1.02, WRAPPER, path, hidden="runtime_noise")
    s.exec(2, PAYLOAD, path, parent=WRAPPER)
    d = alerts(core, s.events)
    write, exec_ = d["evidence"]["history.write_then_exec_same_path"]
    assert (write["kind"], write["path"], exec_["path"]) == ("open", path, path)


def test_5_hidden_writes_never_reach_the_session_snapshot(core: Analyzer):
    s = Seq(common=TREE).write(1, GATEWAY_TGID, "/tmp/x/.openclaw/p", hidden="runtime_noise")
    run_events(core, s.events)
    (_, snap), = core.handle(("sessionizer.session", lifecycle(1, "closed")), 0)
    assert snap["recent_events"] == []


GATEWAY_TGID = 100


def test_6_fake_cli_in_the_same_session(core: Analyzer):
    """The sessionizer no longer opens a session for a profile-matching exec inside a tree, so
    the payload's exec stays in the session of the write."""
    s = Seq(common=TREE)
    s.write(1, GATEWAY_TGID, "/tmp/d/p", role="agent")          # the write tool: the runtime itself
    tool_call(s, 2, ["/tmp/d/openclaw", "agent", "-m", "hi"])
    s.exec(3, PAYLOAD, "/tmp/d/p", parent=WRAPPER)
    alerts(core, s.events)


def test_7_time_gap_new_session_of_the_same_tree(core: Analyzer):
    first = Seq(session_id=1, common=TREE)
    first.write(1, GATEWAY_TGID, "/tmp/d/p.sh", role="agent")
    run_events(core, first.events)
    core.handle(("sessionizer.session", lifecycle(1, "closed", tree_id=7, shard=7)), 0)
    core.handle(("sessionizer.session", lifecycle(2, "opened", tree_id=7, shard=7,
                                                  parent_session_id=1)), 0)
    second = Seq(session_id=2, common=TREE)
    tool_call(second, 8, ["/usr/bin/chmod", "+x", "/tmp/d/p.sh"])
    second.exec(8.5, PAYLOAD, "/tmp/d/p.sh", parent=WRAPPER)
    alerts(core, second.events, sid=2)


def test_8_detached_delayed_run(core: Analyzer):
    """``setsid nohup sh -c 'sleep 4; /tmp/d/p.sh' &`` as the last thing a command does."""
    first = Seq(session_id=1, common=TREE)
    first.write(1, GATEWAY_TGID, "/tmp/d/p.sh", role="agent")
    tool_call(first, 2, ["/usr/bin/setsid", "nohup", "sh", "-c", "sleep 4; /tmp/d/p.sh"])
    first.exec(2.1, TOOL, "/bin/sh", ["sh", "-c", "sleep 4; /tmp/d/p.sh"], parent=WRAPPER)
    run_events(core, first.events)
    core.handle(("sessionizer.session", lifecycle(1, "closed", tree_id=7, shard=7)), 0)
    second = Seq(session_id=3, common=TREE)
    second.exec(6.2, PAYLOAD, "/tmp/d/p.sh", parent=TOOL)
    alerts(core, second.events, sid=3)


def test_other_trees_do_not_share_history(core: Analyzer):
    a = Seq(session_id=1, common={"tree_id": 7, "shard": 7}).write(1, TOOL, "/tmp/d/p.sh")
    b = Seq(session_id=2, common={"tree_id": 8, "shard": 8}).exec(2, PAYLOAD, "/tmp/d/p.sh")
    assert not decisions(run_events(core, a.events + b.events))


def test_horizon_bounds_write_then_exec(bundled: Policy):
    """history_horizon_seconds (600 by default): a write 601 s before the exec is forgotten."""
    for gap, expected in ((599, True), (601, False)):
        core = Analyzer(bundled)
        s = Seq(common=TREE).write(1, TOOL, "/tmp/d/p.sh").exec(1 + gap, PAYLOAD, "/tmp/d/p.sh")
        assert bool(decisions(run_events(core, s.events))) is expected


def test_idle_trees_are_dropped_after_the_horizon(core: Analyzer):
    s = Seq(common=TREE).write(1, TOOL, "/tmp/d/p.sh")
    core.handle(("sessionizer.event", s.events[0]), 10**9)
    core.handle(("sessionizer.session", lifecycle(1, "closed", tree_id=7, shard=7)), 10**9)
    assert 7 in core.trees.trees                  # kept for a later session of the tree
    core.tick(10**9 + 599 * 10**9)
    assert 7 in core.trees.trees
    core.tick(10**9 + 601 * 10**9)
    assert 7 not in core.trees.trees and core.stats()["trees_expired"] == 1


def test_session_without_tree_id_keeps_its_own_history_until_closed(core: Analyzer):
    """Recordings from before tree_id: the session is its own tree, dropped when it closes."""
    s = Seq(session_id=4).write(1, TOOL, "/tmp/d/p.sh")
    run_events(core, s.events)
    assert list(core.trees.trees) == [-5]
    core.handle(("sessionizer.session", lifecycle(4, "closed")), 0)
    assert core.trees.trees == {}


def test_bundled_rules_file_is_the_default_mode():
    from policy import load_policy
    assert load_policy(CHECKOUT / "rules.json").analysis.history_mode == "indexed"
