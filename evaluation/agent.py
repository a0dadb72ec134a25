"""The unprivileged agent: the ``casa-agent`` user OpenClaw runs as, its OpenClaw home, and the
scratch directory its turns work in.

The agent never runs as root: as root every session would have every dangerous capability and no
seccomp, and the rules would score the harness instead of the agent (REQUIREMENTS.md).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluation.toolchain import AGENT_USER, Toolchain

__all__ = ["AgentHome", "AS_AGENT", "AGENT_USER", "EVAL_TMP", "FAKELLM_PORT", "GATEWAY_PORT", "GATEWAY_TOKEN",
           "agent_uid", "reset_scratch"]

EVAL_TMP = Path("/tmp/openclaw-eval")
FAKELLM_PORT = 18080
GATEWAY_PORT = 18790
GATEWAY_TOKEN = "casa-eval-token"

AS_AGENT: dict[str, Any] = {"user": AGENT_USER, "group": AGENT_USER, "extra_groups": []}
"""Popen keywords that run a child as casa-agent (no supplementary groups: not root's, not casa's)."""


@dataclass(frozen=True, slots=True)
class AgentHome:
    """casa-agent's OpenClaw state: a config pointing at the fake model, no onboarding."""

    home: Path

    @classmethod
    def of_user(cls, mode: str = "gateway") -> AgentHome:
        """casa-agent's home for the gateway; a separate HOME for --local, which refuses to run
        while a gateway serves the same state directory."""
        home = Path(os.path.expanduser(f"~{AGENT_USER}"))
        return cls(home if mode == "gateway" else home / "local-mode")

    @property
    def state_dir(self) -> Path:
        return self.home / ".openclaw"

    @property
    def config_path(self) -> Path:
        return self.state_dir / "openclaw.json"

    def env(self, toolchain: Toolchain) -> dict[str, str]:
        """A clean environment. No LANG: with Debian's C.UTF-8 every process opens ~20
        /usr/lib/locale/C.utf8/LC_* files, which the harness should not add to every case."""
        return {"HOME": str(self.home), "USER": AGENT_USER, "LOGNAME": AGENT_USER,
                "OPENCLAW_STATE_DIR": str(self.state_dir), "OPENCLAW_CONFIG_PATH": str(self.config_path),
                "OPENCLAW_NO_RESPAWN": "1",
                "PATH": f"{toolchain.node_bin_dir}:/usr/local/bin:/usr/bin:/bin"}

    def write_config(self, llm_port: int = FAKELLM_PORT, gateway_port: int = GATEWAY_PORT) -> None:
        config = {
            "gateway": {"mode": "local", "port": gateway_port, "bind": "loopback",
                        "auth": {"mode": "token", "token": GATEWAY_TOKEN}},
            "agents": {"defaults": {"model": {"primary": "fakellm/fake-model"}}},
            "tools": {"profile": "full", "exec": {"mode": "full"}},
            "models": {"mode": "merge", "providers": {"fakellm": {
                "baseUrl": f"http://127.0.0.1:{llm_port}/v1", "api": "openai-completions", "apiKey": "sk-fake",
                "models": [{"id": "fake-model", "name": "fake", "input": ["text"], "contextWindow": 128000,
                            "maxTokens": 4096, "reasoning": False,
                            "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0}}]}}},
        }
        self.state_dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.home, AGENT_USER, AGENT_USER)
        self.config_path.write_text(json.dumps(config, indent=2))
        shutil.chown(self.state_dir, AGENT_USER, AGENT_USER)
        shutil.chown(self.config_path, AGENT_USER, AGENT_USER)
        self.config_path.chmod(0o600)


def agent_uid() -> int:
    return pwd.getpwnam(AGENT_USER).pw_uid


def reset_scratch() -> None:
    """A fresh /tmp/openclaw-eval owned by the agent, so no case sees another's files."""
    shutil.rmtree(EVAL_TMP, ignore_errors=True)
    EVAL_TMP.mkdir(mode=0o755)
    shutil.chown(EVAL_TMP, AGENT_USER, AGENT_USER)
