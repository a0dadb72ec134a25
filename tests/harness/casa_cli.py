"""``casa`` as a user runs it: ``python -m cli`` in a subprocess, from the checkout.

The stack tests use ``Stack.casa`` instead, which points the verbs at their private stack.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

__all__ = ["CHECKOUT", "casa"]

CHECKOUT = Path(__file__).resolve().parents[2]


def casa(*args: str, env: dict[str, str] | None = None, timeout: float = 60,
         errors: str = "strict") -> subprocess.CompletedProcess:
    """Run ``casa ARGS``; output decoded as UTF-8 (``errors="surrogateescape"`` keeps odd bytes)."""
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=CHECKOUT, env=env, errors=errors)
