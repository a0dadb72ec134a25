"""stage.state_file: atomic and fsync'd writes, one version key, unusable files refused with a
clear reason and set aside (the stage starts clean), one parser for saved bus positions."""

from __future__ import annotations

import json
import logging
import os

import pytest

from bus.sequence import SequenceTracker, StreamState
from stage.state_file import StateFile, StateFileError, read_positions


def test_a_write_is_the_whole_document_with_its_version_and_leaves_no_temporary(tmp_path) -> None:
    f = StateFile(tmp_path / "deep" / "s.json", 3)
    assert f.write({"clean": True, "n": [1, 2]})
    doc = json.loads((tmp_path / "deep" / "s.json").read_text())
    assert doc == {"version": 3, "clean": True, "n": [1, 2]}
    assert f.read() == doc
    assert os.listdir(tmp_path / "deep") == ["s.json"]


def test_the_write_is_fsynced_before_the_rename(tmp_path, monkeypatch) -> None:
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b))[1])
    assert StateFile(tmp_path / "s.json", 1).write({})
    assert calls == ["fsync", "replace"]


def test_a_failed_write_keeps_the_previous_file_and_warns_once(tmp_path, monkeypatch, caplog) -> None:
    f = StateFile(tmp_path / "s.json", 1, what="test checkpoint", cost="nothing survives")
    assert f.write({"gen": 1})

    def refuse(a: object, b: object) -> None:
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", refuse)
    with caplog.at_level(logging.WARNING, logger="casa.stage"):
        assert not f.write({"gen": 2}) and not f.write({"gen": 3})
    assert f.failed and f.write_failures == 2
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "cannot write the test checkpoint; nothing survives" in warnings[0]
    assert "No space left on device" in warnings[0]
    assert json.loads((tmp_path / "s.json").read_text())["gen"] == 1     # the old one, whole
    monkeypatch.undo()
    assert f.write({"gen": 4}) and not f.failed


@pytest.mark.parametrize("content, reason", [
    ("{ not json", "unreadable: not JSON"),
    ("[1, 2]", "of another format: not a JSON object"),
    (json.dumps({"version": 9}), "of another format: version 9 (this build reads 2, 1)"),
    (json.dumps({"n": 1}), "of another format: version None"),
    (json.dumps({"version": True}), "of another format: version True"),
])
def test_an_unusable_file_is_refused_with_a_clear_reason(tmp_path, content, reason) -> None:
    path = tmp_path / "s.json"
    path.write_text(content)
    with pytest.raises(StateFileError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        StateFile(path, 2, older=(1,)).read()


def test_load_sets_an_unusable_file_aside_and_starts_clean(tmp_path, caplog) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"version": 99, "sessions": [1]}))
    with caplog.at_level(logging.ERROR, logger="casa.stage"):
        assert StateFile(path, 1, what="sink checkpoint").load() is None
    assert not path.exists()
    assert json.loads((tmp_path / "s.json.corrupt").read_text())["version"] == 99
    assert "sink checkpoint unusable; starting clean" in caplog.text and "version 99" in caplog.text
    assert StateFile(path, 1).load() is None        # nothing there now: clean, silently


def test_older_versions_and_the_old_key_are_read(tmp_path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"v": 1, "bus": []}))          # written before the key was unified
    assert StateFile(path, 2, older=(1,)).read() == {"v": 1, "bus": []}
    path.write_text(json.dumps({"version": 1}))
    assert StateFile(path, 1).read() == {"version": 1}


def test_positions_are_read_all_or_nothing_in_both_layouts() -> None:
    tracker = SequenceTracker()
    tracker.observe("analyzer-0", "analyzer.event", 7, 41)
    assert read_positions(tracker.positions()) == {("analyzer-0", "analyzer.event"): StreamState(7, 41)}
    older = {"collector.event": {"epoch": 7, "seq": 41}}          # the sessionizer's per-topic map
    assert read_positions(older, "collector") == {("collector", "collector.event"): StreamState(7, 41)}
    assert read_positions(None) == {}
    good = {"stream": "s", "topic": "t", "epoch": 1, "seq": 2}
    for damaged in ([good, {"stream": "s", "topic": "t", "epoch": -1, "seq": 2}], [good, "x"],
                    "collector.event", older):
        with pytest.raises(ValueError):
            read_positions(damaged)
