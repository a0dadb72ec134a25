"""The generic launchers and the attack profile set (config/casa.attacks.json).

The suite installs two copies of /bin/bash under distinctive names in
``evaluation/attacks/bin/`` (root-owned, 0755, gitignored): ``casa-atk-agent`` (matched by the
``attack-agent`` invocation profile) and ``casa-atk-gw`` (the ``attack-runtime`` runtime
profile). A scenario is ``<launcher> -c SCRIPT``: the launcher is the agent root, the script is
what a hijacked agent's tool call runs. Nothing about OpenClaw is involved, which is the point:
each scenario runs under any agent profile.

The "implant" the download scenarios fetch is a tiny ELF compiled here once per run (it creates
/tmp/casa-payload-ran in the sandbox and prints a line); without a compiler, a copy of
/usr/bin/true stands in.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from evaluation.attacks.servers import PAYLOAD_C

__all__ = ["LAUNCHERS", "BIN_DIR", "ATTACK_CONFIG", "install_launchers", "attack_profiles", "build_implant"]

CHECKOUT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(__file__).resolve().parent / "bin"
ATTACK_CONFIG = CHECKOUT / "config" / "casa.attacks.json"
LAUNCHERS = {"agent": "casa-atk-agent", "runtime": "casa-atk-gw"}


def install_launchers(bin_dir: Path = BIN_DIR) -> dict[str, Path]:
    """Copy /bin/bash to each launcher name (idempotent); returns profile -> path."""
    bin_dir.mkdir(mode=0o755, exist_ok=True)
    os.chown(bin_dir, 0, 0)
    os.chmod(bin_dir, 0o755)
    out = {}
    for profile, name in LAUNCHERS.items():
        target = bin_dir / name
        if not target.exists() or not filecmp.cmp("/bin/bash", target, shallow=False):
            shutil.copy2("/bin/bash", target)
        os.chown(target, 0, 0)
        os.chmod(target, 0o755)
        out[profile] = target
    return out


def attack_profiles(config: Path = ATTACK_CONFIG) -> list[dict[str, Any]]:
    """The ``profiles`` of config/casa.attacks.json (what the Stack's collector is given)."""
    return list(json.loads(config.read_text())["profiles"])


def build_implant(dest: Path) -> Path:
    """Compile the stand-in implant into ``dest`` (a copy of /usr/bin/true without gcc)."""
    src = dest.with_suffix(".c")
    src.write_bytes(PAYLOAD_C)
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or subprocess.run([cc, "-O1", "-o", str(dest), str(src)], capture_output=True,
                                    check=False).returncode != 0:
        shutil.copy2("/usr/bin/true", dest)
    os.chmod(dest, 0o755)
    return dest
