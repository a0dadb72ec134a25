"""Loss is never silent: a ring buffer too small for a burst drops records in the kernel, and the
collector publishes exactly as many as `loss` events (where="kernel") as its counter shows."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.collector.harness import running_collector

pytestmark = pytest.mark.root

WORKLOAD = Path(__file__).resolve().parent / "workload.py"
OPENS = 20_000


def test_kernel_drops_are_published_as_loss_events(tmp_path: Path):
    target = tmp_path / "burst-target"
    target.write_text("x")
    with running_collector(tmp_path, ringbuf_pages=4) as (col, tap, root_bin):
        script = "exec " + shlex.join([sys.executable, str(WORKLOAD), "opens", str(target), str(OPENS)])
        p = subprocess.Popen([str(root_bin), "-c", script], stdout=subprocess.DEVNULL)
        p.wait(60)
        tap.wait_for(lambda e: e["kind"] == "exit" and e["tgid"] == p.pid, timeout_s=20)
        hb = tap.wait_heartbeat()
        hb = tap.wait_heartbeat()
        drops = hb.counters["kernel_drops"]
        lost = sum(e["count"] for e in tap.of(kind="loss", where="kernel"))
        got = len(tap.of(kind="open", path=str(target), tgid=p.pid))
    assert drops > 0, "a 16 KiB ring buffer should not hold a 20k-open burst"
    assert lost == drops
    assert got < OPENS <= got + drops
    assert tap.sub.counters.lost_messages == 0        # the bus itself lost nothing
