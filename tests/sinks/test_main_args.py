"""Smoke tests of ``python -m sinks``: help, bad arguments, bad settings, Ctrl-C."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]


def run(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("CASA_", "OTEL_"))}
    full.update(env or {})
    full["PYTHONPATH"] = str(CHECKOUT)
    return subprocess.run(args, env=full, cwd=cwd, capture_output=True, text=True, timeout=timeout_s)


def test_help_has_examples() -> None:
    r = run([sys.executable, "-m", "sinks", "--help"])
    assert r.returncode == 0 and "examples:" in r.stdout and "jsonl" in r.stdout


def test_bad_arguments_exit_2() -> None:
    assert run([sys.executable, "-m", "sinks", "bogus"]).returncode == 2
    r = run([sys.executable, "-m", "sinks", "jsonl", "--instances", "0"])
    assert r.returncode == 2 and "--instances must be at least 1" in r.stderr


def test_bad_endpoint_is_a_clear_error(tmp_path: Path) -> None:
    r = run([sys.executable, "-m", "sinks", "otel", "--bus-dir", str(tmp_path)],
            env={"CASA_OTEL_EXPORTER_OTLP_ENDPOINT": "/not/an/endpoint"}, cwd=tmp_path)
    assert r.returncode == 1
    assert "cannot start the otel sink | reason=OTLP endpoint '/not/an/endpoint' is neither" in r.stderr


def test_ctrl_c_stops_cleanly_with_final_counters(tmp_path: Path) -> None:
    r = run(["timeout", "--preserve-status", "-s", "INT", "2", sys.executable, "-m", "sinks", "jsonl", "--bus-dir",
             str(tmp_path / "bus")], env={"CASA_LOG_DIR": str(tmp_path / "logs")}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "sink running | stream=sinks-jsonl analyzers=analyzer-0" in r.stderr
    assert "sink stopped | stream=sinks-jsonl" in r.stderr and "lost_records=0" in r.stderr
