"""Reading the logs back: rotated generations (logrotate's numbered, compressed and dated names),
torn or foreign lines, the sinks' time format."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pytest

from cli.logs import LogReader, LogSet, generations, parse_duration_s, parse_time_ns
from cli.sessionlog import summaries
from tests.cli.log_writer import S, T0, LogWriter, attack_session, benign_session, write_logs


def _rotate(log_dir: Path, suffix: str, compress: bool = False) -> None:
    """logrotate's rename (+ optional gzip) of all four logs; the sink then creates new ones."""
    for name in ("events", "sessions", "audit", "alert"):
        src = log_dir / f"{name}.log"
        if not src.exists():
            continue
        dst = log_dir / f"{name}.log{suffix}"
        src.rename(dst)
        if compress:
            with open(dst, "rb") as fi, gzip.open(f"{dst}.gz", "wb") as fo:
                shutil.copyfileobj(fi, fo)
            os.utime(f"{dst}.gz", (dst.stat().st_mtime,) * 2)
            dst.unlink()


def _age(path: Path, seconds_ago: float) -> None:
    t = path.stat().st_mtime - seconds_ago
    os.utime(path, (t, t))


def test_generations_are_oldest_first_and_only_the_rotation_names(tmp_path: Path) -> None:
    live = tmp_path / "alert.log"
    for i, name in enumerate(["alert.log.3.gz", "alert.log.2", "alert.log.1", "alert.log"]):
        (tmp_path / name).write_text("")
        os.utime(tmp_path / name, (1000 + i, 1000 + i))
    for other in ("alert.log.bak", "alert.logger", "alert.log.1.swp", "xalert.log.1"):
        (tmp_path / other).write_text("")
    assert [p.name for p in generations(live)] == ["alert.log.3.gz", "alert.log.2", "alert.log.1", "alert.log"]
    dated = tmp_path / "d"
    dated.mkdir()
    for i, name in enumerate(["events.log-20261201.gz", "events.log-20261202", "events.log"]):
        (dated / name).write_text("")
        os.utime(dated / name, (2000 + i, 2000 + i))
    assert [p.name for p in generations(dated / "events.log")] == \
        ["events.log-20261201.gz", "events.log-20261202", "events.log"]
    assert generations(tmp_path / "missing" / "x.log") == []


def test_a_session_split_over_rotated_and_compressed_generations_is_read_whole(tmp_path: Path) -> None:
    whole = attack_session(25, T0)
    writer = LogWriter(tmp_path)
    writer.send(whole[:2])                        # opened + events
    writer.close()
    _rotate(tmp_path, ".2", compress=True)
    for p in tmp_path.iterdir():
        _age(p, 200)
    writer.reopen()
    writer.send(whole[2:3])                       # the decision
    writer.close()
    _rotate(tmp_path, ".1")
    for p in tmp_path.glob("*.log.1"):
        _age(p, 100)
    writer.reopen()
    writer.send(whole[3:] + benign_session(26, T0 + 100 * S))   # the close, then another
    writer.close()
    reader = LogReader()
    rows = summaries(reader, LogSet.resolve(tmp_path))
    assert set(rows) == {25, 26}
    s = rows[25]
    assert (s.events, s.score, s.action, s.closed, s.complete) == (7, 9, "ALERT", True, True)
    assert (s.profile, s.leader, s.start_ns, s.end_ns) == ("openclaw-cli", 100, T0, T0 + 8 * S)
    assert len(list(reader.session_events(tmp_path / "events.log", 25))) == 7
    assert reader.bad_lines == 0 and reader.errors == []


def test_torn_and_foreign_lines_are_counted_not_fatal(tmp_path: Path) -> None:
    write_logs(tmp_path, attack_session(25, T0))
    with open(tmp_path / "events.log", "ab") as fh:
        fh.write(b'not json\n[1,2]\n{"timestamp":"2027-01-15T08:00:09Z","pid":1,"session_id":25')  # torn
    with open(tmp_path / "sessions.log", "ab") as fh:
        fh.write(b"\xff\xfe garbage\n")
    (tmp_path / "alert.log.1.gz").write_bytes(b"not gzip at all")
    reader = LogReader()
    rows = summaries(reader, LogSet.resolve(tmp_path))
    assert rows[25].action == "ALERT" and rows[25].events == 7
    events = list(reader.session_events(tmp_path / "events.log", 25))
    assert len(events) == 7
    # the sessions.log line; events.log lines without a session_id tail are never parsed at all
    assert reader.bad_lines == 1 and any("alert.log.1.gz" in e for e in reader.errors)


def test_log_dir_beats_the_environment_and_the_environment_beats_the_default(tmp_path: Path) -> None:
    env = {"CASA_LOG_DIR": "/elsewhere", "CASA_ALERT_LOG_PATH": "/x/alert.log"}
    assert LogSet.resolve(tmp_path, env, env_file=None).alert == tmp_path / "alert.log"
    assert LogSet.resolve(None, env, env_file=None).alert == Path("/x/alert.log")
    assert LogSet.resolve(None, env, env_file=None).events == Path("/elsewhere/events.log")
    dotenv = tmp_path / ".env"
    dotenv.write_text("CASA_LOG_DIR=/from/dotenv\nPYTHONPATH=/evil\n")
    got = LogSet.resolve(None, {}, env_file=dotenv)
    assert got.sessions == Path("/from/dotenv/sessions.log")
    assert LogSet.resolve(None, {"CASA_LOG_DIR": "/env"}, env_file=dotenv).sessions == Path("/env/sessions.log")


@pytest.mark.parametrize("text,ns", [
    ("2027-01-15T08:00:00Z", T0),
    ("2027-01-15T08:00:00.5Z", T0 + 500_000_000),
    ("2027-01-15T02:00:00.000000001-06:00", T0 + 1),
    ("2027-01-15T08:00:00.123456789+00:00", T0 + 123_456_789),
])
def test_the_sinks_time_format_parses_to_the_nanosecond(text: str, ns: int) -> None:
    assert parse_time_ns(text) == ns


@pytest.mark.parametrize("bad", ["", "yesterday", "2027-01-15 08:00:00Z", "2027-01-15T08:00:00", None, 5,
                                 "2027-01-15T08:00:00.1234567890Z"])
def test_what_is_not_a_sink_time_is_none(bad: object) -> None:
    assert parse_time_ns(bad) is None


def test_durations() -> None:
    assert [parse_duration_s(t) for t in ("90", "90s", "10m", "2h", "1d", "1.5m")] == [90, 90, 600, 7200, 86400, 90]
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration_s("10 minutes")
