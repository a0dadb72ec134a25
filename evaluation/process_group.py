"""Stopping what the evaluation started in a process group of its own (``start_new_session``).

OpenClaw's gateway, the CASA stages and the attack suite's victims all fork helpers; signalling
the group, not the one pid, is what leaves nothing behind between cases.
"""

from __future__ import annotations

import os
import signal
import subprocess

__all__ = ["kill_group", "stop_group"]


def kill_group(pgid: int) -> None:
    """SIGKILL every process of group ``pgid`` (gone already is fine)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop_group(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM the process group ``proc`` leads, then SIGKILL it after ``timeout_s``."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        proc.wait()
    except ProcessLookupError:
        pass
