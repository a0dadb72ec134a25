"""The .env file: §2.2 syntax, never overrides the environment, never crashes on bad lines."""

from __future__ import annotations

from pathlib import Path

from sinks.envfile import load_env_file, parse_env_text
from sinks.jsonl import LogPaths


def test_syntax_export_comments_quotes() -> None:
    text = ("# comment\n\nA=1\nexport B = two words \nC=\"quoted # not a comment\"\nD='x'\n"
            "E=\"mismatched'\nF=\n  G=spaced\n")
    settings, problems = parse_env_text(text)
    assert {s.key: s.value for s in settings} == {
        "A": "1", "B": "two words", "C": "quoted # not a comment", "D": "x", "E": "\"mismatched'",
        "F": "", "G": "spaced"}
    assert problems == []


def test_bad_lines_are_reported_with_line_numbers() -> None:
    settings, problems = parse_env_text("OK=1\nno equals here\n1BAD=2\n", "x/.env")
    assert [s.key for s in settings] == ["OK"]
    assert problems == ["x/.env:2: expected KEY=VALUE with a valid variable name; line skipped",
                        "x/.env:3: expected KEY=VALUE with a valid variable name; line skipped"]


def test_environment_wins_and_missing_file_is_fine(tmp_path: Path) -> None:
    env = {"CASA_AUDIT_LOG_PATH": "/from/env"}
    f = tmp_path / ".env"
    f.write_text("CASA_AUDIT_LOG_PATH=/from/file\nCASA_ALERT_LOG_PATH=/from/file/alert.log\n")
    assert load_env_file(f, env) == ["CASA_ALERT_LOG_PATH"]
    assert env == {"CASA_AUDIT_LOG_PATH": "/from/env", "CASA_ALERT_LOG_PATH": "/from/file/alert.log"}
    assert load_env_file(tmp_path / "absent", env) == []


def test_unreadable_env_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "dir.env").mkdir()                 # reading a directory fails with an OSError
    assert load_env_file(tmp_path / "dir.env", {}) == []


def test_log_paths_primary_alias_and_defaults() -> None:
    p = LogPaths.from_env({})
    assert (p.events, p.sessions, p.audit, p.alert) == (
        Path("/var/log/casa/events.log"), Path("/var/log/casa/sessions.log"),
        Path("/var/log/casa/audit.log"), Path("/var/log/casa/alert.log"))
    p = LogPaths.from_env({"CASA_EVENTS_LOG": "/a/ev", "CASA_SESSIONS_LOG_PATH": "/a/s",
                           "CASA_SESSIONS_LOG": "/ignored", "CASA_LOG_DIR": "/d"})
    assert (p.events, p.sessions, p.audit) == (Path("/a/ev"), Path("/a/s"), Path("/d/audit.log"))
    p = LogPaths.from_env({"CASA_EVENTS_LOG_PATH": "/p", "CASA_EVENTS_LOG": "/alias"})
    assert p.events == Path("/p")
