"""Checkpointed input positions: a restarted subscriber sees what it missed while it was down."""

from __future__ import annotations

from bus.sequence import SequenceTracker


def test_restored_positions_reveal_the_messages_published_while_down():
    before = SequenceTracker()
    for seq in range(1, 8):
        before.observe("sessionizer", "sessionizer.event", 111, seq)
    saved = before.positions()
    assert saved == [{"stream": "sessionizer", "topic": "sessionizer.event", "epoch": 111, "seq": 7}]

    after = SequenceTracker()
    assert after.restore_positions(saved) == 1
    # messages 8..11 were published while the stage was down; 12 is the first one it reads
    assert after.observe("sessionizer", "sessionizer.event", 111, 12) == 4
    assert after.lost_total == 4


def test_without_positions_the_first_message_is_never_a_gap():
    fresh = SequenceTracker()
    assert fresh.observe("sessionizer", "sessionizer.event", 111, 12) == 0


def test_malformed_positions_are_skipped():
    t = SequenceTracker()
    items = [{"stream": "a", "topic": "a.event", "epoch": 1, "seq": 3},
             {"stream": "a", "topic": "a.event", "epoch": "x", "seq": 3},
             {"stream": 5, "topic": "a.event", "epoch": 1, "seq": 3},
             {"stream": "b", "topic": "b.event", "epoch": 1, "seq": True},
             {}]
    assert t.restore_positions(items) == 1
    assert list(t.streams) == [("a", "a.event")]


def test_parse_positions_is_all_or_nothing():
    import pytest

    from bus.sequence import parse_positions

    good = {"stream": "a", "topic": "a.event", "epoch": 1, "seq": 3}
    parsed = parse_positions([good])
    assert parsed[("a", "a.event")].epoch == 1 and parsed[("a", "a.event")].last_seq == 3
    for bad in ({"stream": "a", "topic": "a.event", "epoch": 1, "seq": -1},
                {"stream": "a", "topic": "a.event", "epoch": True, "seq": 3},
                {"stream": 2, "topic": "a.event", "epoch": 1, "seq": 3}, "x"):
        with pytest.raises(ValueError):
            parse_positions([good, bad])
    with pytest.raises(ValueError):
        parse_positions({"not": "a list"})
