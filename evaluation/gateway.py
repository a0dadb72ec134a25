"""OpenClaw's gateway for the evaluation: ``openclaw gateway run`` as casa-agent, started once per
run and reused by every gateway-mode case (as a user's long-running gateway would be)."""

from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from evaluation.agent import AS_AGENT, GATEWAY_PORT, AgentHome
from evaluation.network import port_open
from evaluation.process_group import stop_group
from evaluation.toolchain import Toolchain

__all__ = ["Gateway", "GATEWAY_START_TIMEOUT_S"]

GATEWAY_START_TIMEOUT_S = 60.0
GATEWAY_STOP_S = 15.0

log = logging.getLogger("casa.eval.runner")


@dataclass(slots=True)
class Gateway:
    """``openclaw gateway run`` as casa-agent, in its own process group."""

    toolchain: Toolchain
    home: AgentHome
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if port_open(GATEWAY_PORT):
            raise RuntimeError(f"port {GATEWAY_PORT} is already in use: stop the other gateway first")
        out = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(self.toolchain.openclaw), "gateway", "run"], **AS_AGENT,
                                     env=self.home.env(self.toolchain), cwd=self.home.home, stdout=out,
                                     stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        deadline = time.monotonic() + GATEWAY_START_TIMEOUT_S
        while not port_open(GATEWAY_PORT):
            if self.proc.poll() is not None:
                raise RuntimeError(f"openclaw gateway exited with {self.proc.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"openclaw gateway not listening on {GATEWAY_PORT} after "
                                   f"{GATEWAY_START_TIMEOUT_S:.0f} s; see {self.log_path}")
            time.sleep(0.25)
        log.info("gateway up | pid=%d port=%d", self.proc.pid, GATEWAY_PORT)

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, GATEWAY_STOP_S)
