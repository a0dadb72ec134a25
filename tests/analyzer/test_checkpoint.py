"""Checkpoint and restore of open sessions (analyzer/checkpoint.py, issue 5)."""

from __future__ import annotations

import json
import time

import pytest

from analyzer.checkpoint import MAX_CPU_SHARE, Checkpointer
from analyzer.core import Analyzer
from tests.analyzer.analyzer_sequences import Seq, decisions, lifecycle, run_events


def half_m05(sid: int = 4) -> tuple[Seq, Seq]:
    first, second = Seq(session_id=sid), Seq(session_id=sid)
    first.exec(1, 200, "/usr/bin/curl").connect(1.5, 200, "93.184.216.34", 443)
    first.write(2, 100, "/tmp/openclaw-eval/helper.sh").open(2.5, 201, "/tmp/gone (deleted)")
    second.exec(3, 202, "/tmp/openclaw-eval/helper.sh")
    return first, second


def test_restore_continues_a_session_without_rescoring(bundled, tmp_path):
    first, second = half_m05()
    core = Analyzer(bundled)
    core.handle(("sessionizer.session", lifecycle(4, "opened")), 0)
    before = decisions(run_events(core, first.events))
    assert [r["name"] for d in before for r in d["triggered_rules"]] == ["opened_deleted_path"]
    ck = Checkpointer(tmp_path / "analyzer-0.json")
    assert ck.save(core, clean=True)

    restored = Analyzer(bundled)
    assert ck.restore(restored, 0) == 1
    after = decisions(run_events(restored, second.events))
    names = [r["name"] for d in after for r in d["triggered_rules"]]
    assert "opened_deleted_path" not in names                  # scored before the restart
    assert set(names) == {"download_then_suspicious_exec", "download_then_shell_temp_exec",
                          "write_then_exec_same_path", "write_then_exec_from_suspicious_path"}
    assert after[-1]["score"] == 5 + 19

    # identical to an analyzer that never restarted
    straight = Analyzer(bundled)
    core_ds = decisions(run_events(straight, first.events + second.events))
    assert core_ds[-1]["score"] == after[-1]["score"]
    assert core_ds[-1]["context"] == after[-1]["context"]

    (_, snap), = restored.handle(("sessionizer.session", lifecycle(4, "closed")), 0)
    assert snap["complete"] is False                           # a restart may have missed events
    assert len(snap["recent_events"]) == len(first.events + second.events)


def test_restore_skips_sessions_of_other_instances(bundled, tmp_path):
    core = Analyzer(bundled)
    for sid in (1, 2, 3, 4):
        run_events(core, Seq(session_id=sid).exec(1, 200, "/bin/ls").events)
    ck = Checkpointer(tmp_path / "a.json")
    ck.save(core)
    other = Analyzer(bundled, 1, 2)
    assert ck.restore(other, 0) == 2 and sorted(other.sessions) == [1, 3]


def test_unreadable_or_foreign_checkpoints_are_ignored(bundled, tmp_path, caplog):
    path = tmp_path / "a.json"
    core = Analyzer(bundled)
    assert Checkpointer(path).restore(core, 0) == 0                # missing: fine, silent
    path.write_text("{broken")
    assert Checkpointer(path).restore(core, 0) == 0
    path.write_text(json.dumps({"v": 99}))
    assert Checkpointer(path).restore(core, 0) == 0
    path.write_text(json.dumps({"v": 1, "sessions": [{"session_id": 1}]}))
    assert Checkpointer(path).restore(core, 0) == 0
    assert "unreadable" in caplog.text and "another format" in caplog.text and "damaged" in caplog.text


def test_save_failure_is_reported_once(bundled, tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    ck = Checkpointer(blocker / "sub" / "a.json")
    core = Analyzer(bundled)
    assert not ck.save(core) and not ck.save(core)
    assert caplog.text.count("cannot write the analyzer checkpoint") == 1


def test_non_utf8_paths_survive_a_checkpoint(bundled, tmp_path):
    core = Analyzer(bundled)
    weird = "/tmp/\udcff\udcfe.sh"
    s = Seq(session_id=2).write(1, 100, weird)
    run_events(core, s.events)
    ck = Checkpointer(tmp_path / "a.json")
    ck.save(core)
    restored = Analyzer(bundled)
    ck.restore(restored, 0)
    (d,) = decisions(run_events(restored, Seq(session_id=2).exec(2, 201, weird).events))
    assert d["score"] == 9


def test_restored_session_nobody_mentions_is_closed(bundled, tmp_path):
    """It ended while the analyzer was down: after ORPHAN_AFTER_S a final closed snapshot goes out."""
    core = Analyzer(bundled)
    core.handle(("sessionizer.session", lifecycle(1, "opened")), 0)
    core.handle(("sessionizer.session", lifecycle(2, "opened")), 0)
    run_events(core, half_m05(1)[0].events)
    ck = Checkpointer(tmp_path / "a.json")
    ck.save(core)
    restored = Analyzer(bundled)
    start = 1_000 * 10**9
    ck.restore(restored, start)
    # session 2 is still alive: the sessionizer's periodic flush mentions it
    restored.handle(("sessionizer.session", lifecycle(2, "flushed")), start + 30 * 10**9)
    assert restored.tick(start + 200 * 10**9) == []
    (topic, snap), = restored.tick(start + 301 * 10**9)
    assert snap["session_id"] == 1 and snap["state"] == "closed" and snap["complete"] is False
    assert snap["score"] == 5 and snap["triggered_rules"] == ["opened_deleted_path"]
    assert sorted(restored.sessions) == [2]


def test_binary_lifecycle_fields_survive_a_checkpoint(bundled, tmp_path):
    core = Analyzer(bundled)
    core.handle(("sessionizer.session", lifecycle(2, "opened", profile=b"agent-\xff")), 0)
    ck = Checkpointer(tmp_path / "a.json")
    assert ck.save(core)
    restored = Analyzer(bundled)
    ck.restore(restored, 0)
    (_, snap), = restored.tick(10**15)
    assert snap["profile"] == b"agent-\xff"


def test_input_positions_survive_a_checkpoint_and_reveal_the_gap(bundled, tmp_path, caplog):
    from bus.sequence import SequenceTracker
    path = tmp_path / "a.json"
    before = SequenceTracker()
    before.observe("sessionizer", "sessionizer.event", 111, 40)
    before.observe("sessionizer", "sessionizer.session", 111, 7)
    assert Checkpointer(path).save(Analyzer(bundled), tracker=before)
    ckpt, after = Checkpointer(path), SequenceTracker()
    ckpt.restore(Analyzer(bundled), 0)
    ckpt.resume_positions(after)
    assert after.observe("sessionizer", "sessionizer.event", 111, 45) == 4      # 41..44 missed
    assert after.observe("sessionizer", "sessionizer.session", 222, 1) == 0    # a new epoch: restart
    doc = json.loads(path.read_text())
    doc["bus"][1]["seq"] = "seven"                                            # damaged: none used
    path.write_text(json.dumps(doc))
    ckpt, fresh = Checkpointer(path), SequenceTracker()
    ckpt.restore(Analyzer(bundled), 0)
    ckpt.resume_positions(fresh)
    assert fresh.streams == {} and "damaged input positions" in caplog.text


def test_spread_checkpoint_equals_a_full_save_and_leaves_out_closed_sessions(bundled, tmp_path):
    """begin()/step() writes what save() writes, a slice per call; positions are those at begin()."""
    from bus.sequence import SequenceTracker
    core = Analyzer(bundled)
    for sid in (4, 5, 6):
        core.handle(("sessionizer.session", lifecycle(sid, "opened")), 0)
        run_events(core, Seq(session_id=sid).open(1, 200, "/tmp/x").exec(2, 201, "/bin/sh").events)
    tracker = SequenceTracker()
    tracker.observe("sessionizer", "sessionizer.event", 1, 10)
    full, spread = Checkpointer(tmp_path / "full.json"), Checkpointer(tmp_path / "spread.json")
    assert full.save(core, tracker=tracker)
    spread.begin(core, tracker)
    tracker.observe("sessionizer", "sessionizer.event", 1, 11)        # after begin(): not saved
    assert spread.step(core, budget_s=0) is None and spread.in_progress   # one session per step
    assert spread.step(core, budget_s=0) is None
    assert spread.step(core, budget_s=10) is True and not spread.in_progress
    assert json.loads((tmp_path / "spread.json").read_text()) == json.loads((tmp_path / "full.json").read_text())

    spread.begin(core, tracker)
    spread.step(core, budget_s=0)
    core.handle(("sessionizer.session", lifecycle(6, "closed")), 0)     # closed mid-checkpoint
    assert spread.step(core, budget_s=10) is True
    doc = json.loads((tmp_path / "spread.json").read_text())
    assert sorted(s["session_id"] for s in doc["sessions"]) == [4, 5]
    assert doc["bus"][0]["seq"] == 11
    assert spread.step(core) is None                                   # nothing in progress


def test_a_tree_outlives_its_closed_session_across_a_restart(bundled, tmp_path):
    """Session 1 of tree 9 writes and closes; the analyzer restarts; session 2 of the tree runs
    the file: still write->exec (the tree's indices are checkpointed, spread or at once)."""
    tree = {"tree_id": 9, "shard": 9}
    core = Analyzer(bundled)
    first = Seq(session_id=1, common=tree).write(1, 201, "/tmp/d/p", ino=77, dev=5)
    first.exec(1.5, 203, "/usr/bin/python3", ["python3", "job.py"])       # a pending script
    run_events(core, first.events)
    core.handle(("sessionizer.session", lifecycle(1, "closed", **tree)), 0)
    for spread in (False, True):
        ck = Checkpointer(tmp_path / f"a{spread}.json")
        if spread:
            ck.begin(core)
            while ck.step(core, budget_s=0.0) is None:
                pass
        else:
            assert ck.save(core)
        restored = Analyzer(bundled)
        ck.restore(restored, 0)
        tree9 = restored.trees.trees[9]
        assert list(tree9.scripts.items) == [203] and tree9.procs.items[203][1] == "/usr/bin/python3"
        second = Seq(session_id=2, common=tree).exec(8, 202, "/tmp/d/q", exe="/tmp/d/q", ino=77, dev=5)
        (d,) = decisions(run_events(restored, second.events))
        assert {"write_then_exec_same_path", "write_then_exec_from_suspicious_path"} <= \
            {r["name"] for r in d["triggered_rules"]}
        write, _ = d["evidence"]["history.write_then_exec_same_path"]
        assert (write["path"], write["tgid"], write["ts_ns"]) == ("/tmp/d/p", 201, 10**9)


def test_restored_trees_of_other_instances_are_skipped(bundled, tmp_path):
    core = Analyzer(bundled)
    for t in (2, 3):
        run_events(core, Seq(session_id=t, common={"tree_id": t, "shard": t}).write(1, 201, "/tmp/x").events)
    ck = Checkpointer(tmp_path / "a.json")
    ck.save(core)
    other = Analyzer(bundled, 1, 2)
    ck.restore(other, 0)
    assert sorted(other.trees.trees) == [3] and sorted(other.sessions) == [3]
    assert other.trees.trees[3].sessions == 1


def test_signal_indices_survive_a_restart(bundled, tmp_path):
    """A shell waiting on its pipe, a library directory and a listen, saved with the tree: the
    other halves of pipe_to_shell, loader_hijack and bind_shell come after the restart."""
    tree = {"tree_id": 6, "shard": 6}
    core = Analyzer(bundled)
    first = Seq(session_id=1, common=tree).exec(1, 202, "/bin/sh", ["sh"], stdio=[
        {"type": "pipe", "ino": 44}, {"type": "tty"}, {"type": "tty"}])
    first.write(1.1, 203, "/tmp/d/libz.so.1").exec(1.2, 204, "/usr/bin/python3", ["python3", "-"])
    first.event("listen", 1.3, 204, ret=0, family=2, addr="0.0.0.0", port=5555, backlog=1)
    run_events(core, first.events)
    ck = Checkpointer(tmp_path / "a.json")
    assert ck.save(core)
    restored = Analyzer(bundled)
    ck.restore(restored, 0)
    second = Seq(session_id=2, common=tree)
    second.exec(2, 205, "/usr/bin/curl", ["curl", "x"], stdio=[{"type": "tty"}, {"type": "pipe", "ino": 44},
                                                              {"type": "tty"}])
    second.exec(3, 206, "/usr/bin/id", ["id"], ld_env={"LD_LIBRARY_PATH": "/tmp/d"})
    second.exec(4, 207, "/bin/sh", ["sh", "-i"], stdio=[{"type": "inet"}] * 3)
    run_events(restored, second.events)
    ctx = restored.sessions[2].ctx
    assert ctx.execution.pipe_to_shell and ctx.execution.loader_hijack and ctx.history.bind_shell


def test_tree_rows_of_the_previous_format_are_converted(bundled, tmp_path):
    """Written paths keyed by their text, identities with their path, images with the pid in
    their low bits (before image flags): loaded as the current keys, no flag misread."""
    packed = (10**9 << 25) | (201 << 2)
    row = {"key": 9, "route": 9, "last_ns": 0, "overflowed": None,
           "written": [["/tmp/d/p", packed]], "written_ids": [[(5 << 64) | 77, [packed, "/tmp/d/p"]]],
           "procs": [[201, [(10**9 << 25) | (201 << 2) | 2, "/usr/bin/curl"]]], "scripts": [],
           "latest": {}}
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"v": 1, "clean": True, "instance": 0, "instances": 1, "sessions": [],
                                "trees": [row], "closed": [], "bus": []}))
    core = Analyzer(bundled)
    Checkpointer(path).restore(core, 0)
    tree = core.trees.trees[9]
    assert tree.written_ref("/tmp/d/p", 2 * 10**9) == (10**9, 201, "open", "/tmp/d/p")
    assert tree.procs.items[201][0] & ((1 << 25) - 1) == 0
    s = Seq(session_id=3, common={"tree_id": 9, "shard": 9}).exec(2, 202, "/tmp/d/q", ino=77, dev=5)
    run_events(core, s.events)
    assert core.sessions[3].marks.evidence.refs["history.write_then_exec_same_path"][0][3] == "/tmp/d/p"


def test_periodic_checkpoints_take_a_bounded_share_of_the_cpu(bundled, tmp_path, monkeypatch):
    """After a checkpoint that cost c seconds of CPU the next is due c / MAX_CPU_SHARE later; none
    starts while one is in progress, and a fresh checkpointer is due at once."""
    from analyzer import checkpoint as mod
    core = Analyzer(bundled)
    for sid in (4, 5):
        run_events(core, Seq(session_id=sid).open(1, 200, "/tmp/x").exec(2, 201, "/bin/sh").events)
    cpu = iter([0.0, 0.01, 0.01, 0.05])                # begin: 10 ms; step: 40 ms
    monkeypatch.setattr(mod.time, "thread_time", lambda: next(cpu))
    ck = Checkpointer(tmp_path / "a.json")
    assert ck.due(100.0)
    ck.begin(core)
    assert not ck.due(100.0) and not ck.due(10**6)     # in progress: never a second one
    monkeypatch.setattr(mod.time, "monotonic", lambda: 200.0)
    assert ck.step(core, budget_s=10) is True
    assert ck.last_cost_s == pytest.approx(0.05) and ck.last_done_s == 200.0
    wait = 0.05 / mod.MAX_CPU_SHARE                     # 2.5 s at a 2 % share
    assert not ck.due(200.0 + wait - 0.01)
    assert ck.due(200.0 + wait)


def test_the_analyzer_skips_a_checkpoint_that_is_not_due(bundled, tmp_path):
    """The runtime asks every 5 s; the hooks start one only when the CPU-share cap allows."""
    from analyzer.__main__ import AnalyzerHooks
    from bus import Publisher, Subscriber

    class Sock:
        def send_multipart(self, frames, flags=0):
            pass

    core = Analyzer(bundled)
    run_events(core, Seq(session_id=4).exec(1, 200, "/bin/ls").events)
    ck = Checkpointer(tmp_path / "a.json")
    hooks = AnalyzerHooks(core, Publisher(Sock(), "analyzer"), Subscriber(Sock(), []), ck)
    ck.last_cost_s, ck.last_done_s = 1.0, time.monotonic()    # 1 s of CPU: next in 50 s
    hooks.checkpoint(False)
    assert not ck.in_progress and not (tmp_path / "a.json").exists()
    ck.last_done_s -= 1.0 / MAX_CPU_SHARE
    hooks.checkpoint(False)
    assert ck.in_progress
    while ck.step(core, budget_s=0) is None:              # the spread steps of later passes
        pass
    assert json.loads((tmp_path / "a.json").read_text())["sessions"][0]["session_id"] == 4
