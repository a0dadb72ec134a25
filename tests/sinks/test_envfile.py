"""The .env file: the original's syntax (docs/original.md §2.2), never overrides the environment,
never crashes on bad lines."""

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


def test_env_file_may_set_only_the_sinks_settings(tmp_path: Path, caplog) -> None:
    import logging
    f = tmp_path / ".env"
    f.write_text("CASA_ALERT_LOG_PATH=/x/alert.log\nOTEL_EXPORTER_OTLP_HEADERS=auth=secret\n"
                 "CASA_BUS_DIR=/tmp/evil\nPYTHONPATH=/tmp/evil\nLD_PRELOAD=/tmp/evil.so\n")
    env: dict[str, str] = {}
    with caplog.at_level(logging.WARNING, "casa.sinks"):
        assert load_env_file(f, env) == ["CASA_ALERT_LOG_PATH", "OTEL_EXPORTER_OTLP_HEADERS"]
    assert set(env) == {"CASA_ALERT_LOG_PATH", "OTEL_EXPORTER_OTLP_HEADERS"}
    assert "keys=CASA_BUS_DIR,PYTHONPATH,LD_PRELOAD" in caplog.text
    assert "evil" not in caplog.text and "secret" not in caplog.text      # values are never logged


def test_log_paths_that_would_lose_or_expose_records_are_refused(tmp_path: Path) -> None:
    from sinks.jsonl import log_path_problem
    own = tmp_path / "logs"
    own.mkdir(mode=0o750)
    assert LogPaths.from_env({"CASA_LOG_DIR": str(own)}).problems({"CASA_LOG_DIR": str(own)}) == []
    env = {"CASA_LOG_DIR": str(own), "CASA_ALERT_LOG_PATH": "/dev/null"}
    assert LogPaths.from_env(env).problems(env) == [
        "CASA_ALERT_LOG_PATH gives alert log /dev/null, which is not a regular file (c): records "
        "written there would be lost"]
    assert "/tmp is writable by every user" in log_path_problem(Path("/tmp/casa-alert.log"))
    (own / "events.log").symlink_to(own / "other.log")
    assert log_path_problem(own / "events.log") == "is a symbolic link; name the file itself"
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    assert f"{shared} is writable by every user" in log_path_problem(shared / "new" / "events.log")


def test_the_jsonl_sink_will_not_start_with_alerts_sent_to_dev_null(tmp_path: Path) -> None:
    """The issue's example: a .env line that would make every alert vanish stops the sink, with
    the variable, the path and the reason in its log."""
    from tests.sinks.bus_harness import shared_dir, start_sink, stop
    bus_dir = shared_dir("casa-bus-")
    logs = shared_dir("casa-logs-", owner_casa=True)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / ".env").write_text(f"CASA_LOG_DIR={logs}\nCASA_ALERT_LOG_PATH=/dev/null\n")
    try:
        proc = start_sink("jsonl", bus_dir, {}, cwd)
        proc.wait(30)
        code, err = stop(proc)
    finally:
        import shutil
        shutil.rmtree(bus_dir, ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)
    assert code == 1, err
    assert ("cannot start the jsonl sink | reason=CASA_ALERT_LOG_PATH gives alert log /dev/null, which "
            "is not a regular file") in err
