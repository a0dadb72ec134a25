"""Durable input positions (sinks/checkpoint.py): a sink saves only what it has written or
exported, so a kill -9 with a backlog in memory is counted after the restart, never silent."""

from __future__ import annotations

import json
from pathlib import Path

from bus.sequence import SequenceTracker
from sinks.checkpoint import DurablePositions, PositionStore, RestartGaps, SinkPositions, lag

E = 7          # an analyzer epoch


def pos(seq: int, epoch: int = E, topic: str = "analyzer.event") -> list[dict]:
    return [{"stream": "analyzer-0", "topic": topic, "epoch": epoch, "seq": seq}]


def test_a_snapshot_is_durable_only_once_what_it_accepted_is_resolved() -> None:
    now = [0.0]
    marks = DurablePositions(clock=lambda: now[0])
    marks.note((10, 0), pos(3))
    assert not marks.advance((9, 0)) and marks.durable == [] and not marks.settled
    now[0] += 1
    marks.note((20, 1), pos(5))
    assert marks.advance((10, 0)) and marks.durable == pos(3)       # the first, not the second
    assert not marks.advance((19, 1)) and marks.durable == pos(3)
    assert marks.advance((20, 1)) and marks.durable == pos(5) and marks.settled


def test_close_snapshots_merge_into_the_later_one() -> None:
    marks = DurablePositions(clock=lambda: 0.0)
    marks.note((1,), pos(1))
    marks.note((2,), pos(2))                        # same instant: one snapshot, the later one
    assert not marks.advance((1,))                  # merged: durable only when both are out
    assert marks.advance((2,)) and marks.durable == pos(2)


def test_restore_puts_the_durable_position_in_the_tracker_and_the_rest_is_a_gap(tmp_path: Path) -> None:
    store = PositionStore(tmp_path / "sinks-jsonl.json")
    assert store.save(durable=pos(10), received=pos(15), held=0)
    tracker = SequenceTracker()
    restored = store.restore(tracker)
    assert restored.positions == 1 and not restored.clean
    assert tracker.observe("analyzer-0", "analyzer.event", E, 18) == 7    # 11..17: 5 in memory + 2 while down


def test_a_stream_never_durable_counts_from_its_first_message(tmp_path: Path) -> None:
    store = PositionStore(tmp_path / "s.json")
    store.save(durable=[], received=pos(4), held=0)
    tracker = SequenceTracker()
    restored = store.restore(tracker)
    assert tracker.observe("analyzer-0", "analyzer.event", E, 5) == 4
    assert restored.gaps.check(tracker, lambda *a: None) == 0        # the tracker counted them
    tracker = SequenceTracker()
    restored = store.restore(tracker)
    tracker.observe("analyzer-0", "analyzer.event", E + 1, 1)        # ... unless the analyzer restarted
    assert restored.gaps.check(tracker, lambda *a: None) == 4


def test_received_but_not_durable_is_counted_when_the_analyzer_restarted_too(tmp_path: Path) -> None:
    store = PositionStore(tmp_path / "s.json")
    store.save(durable=pos(10), received=pos(15), held=0)
    tracker = SequenceTracker()
    restored = store.restore(tracker)
    assert restored.gaps is not None and restored.gaps.pending
    tracker.observe("analyzer-0", "analyzer.event", E + 1, 1)       # a new epoch: no gap for the tracker
    lost: list[tuple[str, str, int]] = []
    assert restored.gaps.check(tracker, lambda s, t, n: lost.append((s, t, n))) == 5
    assert lost == [("analyzer-0", "analyzer.event", 5)] and not restored.gaps.pending


def test_with_the_same_epoch_the_tracker_counts_and_the_gaps_do_not_double_count() -> None:
    gaps = RestartGaps({("analyzer-0", "analyzer.event"): (E, 10, 5)})
    tracker = SequenceTracker()
    tracker.restore_positions(pos(10))
    assert gaps.check(tracker, lambda *a: None) == 0 and gaps.pending     # nothing read yet
    assert tracker.observe("analyzer-0", "analyzer.event", E, 16) == 5
    assert gaps.check(tracker, lambda *a: None) == 0 and not gaps.pending


def test_held_events_count_only_after_an_unclean_stop(tmp_path: Path) -> None:
    store = PositionStore(tmp_path / "s.json")
    store.save(durable=pos(3), received=pos(3), held=12)
    assert store.restore(SequenceTracker()).held == 12
    store.save(durable=pos(3), received=pos(3), held=12, clean=True)
    assert store.restore(SequenceTracker()).held == 0


def test_a_version_1_checkpoint_still_restores(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"v": 1, "clean": True, "bus": pos(9)}))
    tracker = SequenceTracker()
    assert PositionStore(path).restore(tracker).positions == 1
    assert tracker.observe("analyzer-0", "analyzer.event", E, 11) == 1


class FakeCore:
    def __init__(self) -> None:
        self.queued, self.out, self.events_held, self.losses = 0, 0, 0, []

    def accepted(self) -> tuple[int, ...]:
        return (self.queued,)

    def resolved(self) -> tuple[int, ...]:
        return (self.out,)

    def held(self) -> int:
        return self.events_held

    def on_loss(self, stream: str, topic: str, lost: int) -> None:
        self.losses.append((stream, topic, lost))


class FakeSub:
    def __init__(self) -> None:
        from bus.subscriber import SubscriberCounters
        self.tracker = SequenceTracker()
        self.counters = SubscriberCounters()


def test_the_loop_saves_the_durable_position_not_the_received_one(tmp_path: Path) -> None:
    now = [0.0]
    positions = SinkPositions(PositionStore(tmp_path / "s.json"), clock=lambda: now[0])
    positions.marks.clock = lambda: now[0]
    core, sub = FakeCore(), FakeSub()
    sub.tracker.observe("analyzer-0", "analyzer.event", E, 1)
    core.queued = core.out = 4                        # message 1: four records, written
    positions.after_read(core, sub, 1)
    now[0] += 1
    sub.tracker.observe("analyzer-0", "analyzer.event", E, 2)
    core.queued = 9                                   # message 2: five records, disk full
    positions.after_read(core, sub, 1)
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["bus"] == pos(1) and doc["received"] == pos(2) and doc["clean"] is False
    assert lag(positions.marks.durable, sub.tracker) == 1
    core.out = 9                                      # space again: written
    now[0] += 1
    positions.after_read(core, sub, 0)
    assert json.loads((tmp_path / "s.json").read_text())["bus"] == pos(2)
    positions.final_save(core, sub)
    assert json.loads((tmp_path / "s.json").read_text())["clean"] is True
