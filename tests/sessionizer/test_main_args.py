"""``python -m sessionizer`` as a command: help, argument errors, clear start-up failures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.sessionizer.synthetic_events import CONFIG, RULES

CHECKOUT = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["timeout", "-s", "INT", "20", sys.executable, "-m", "sessionizer", *args],
                          cwd=CHECKOUT, capture_output=True, text=True, env=env, check=False)


def test_help_has_examples():
    p = run("--help")
    assert p.returncode == 0 and "examples:" in p.stdout and "--flush-interval-s" in p.stdout
    assert "--no-liveness" in p.stdout and "CASA_SESSIONIZER_LIVENESS" in p.stdout


def test_bad_liveness_variable_is_a_usage_error(tmp_path):
    env = {**os.environ, "CASA_SESSIONIZER_LIVENESS": "maybe", "CASA_BUS_DIR": str(tmp_path / "bus")}
    p = run("--rules", str(RULES), "--config", str(CONFIG), "--state-dir", str(tmp_path / "s"), env=env)
    assert p.returncode == 2
    assert "CASA_SESSIONIZER_LIVENESS='maybe': expected 1 or 0" in p.stderr


def test_bad_flush_interval_is_a_usage_error():
    p = run("--flush-interval-s", "0")
    assert p.returncode == 2 and "--flush-interval-s must be > 0" in p.stderr


def test_invalid_rules_file_refuses_to_start(tmp_path):
    bad = tmp_path / "rules.json"
    bad.write_text("{ nope")
    p = run("--rules", str(bad), "--config", str(CONFIG))
    assert p.returncode == 1
    assert "cannot start: configuration invalid" in p.stderr and str(bad) in p.stderr


def test_unusable_bus_directory_refuses_to_start(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    env = {**os.environ, "CASA_BUS_DIR": str(blocker / "bus")}
    p = run("--rules", str(RULES), "--config", str(CONFIG), "--state-dir", str(tmp_path / "s"), env=env)
    assert p.returncode == 1 and "cannot start: bus unavailable" in p.stderr
