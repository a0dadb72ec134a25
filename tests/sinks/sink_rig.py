"""What a sink process test tears down together, in one place."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from tests.sinks.bus_harness import stop

if TYPE_CHECKING:
    from tests.sinks.bus_harness import HeartbeatListener, StandInAnalyzer

__all__ = ["SinkRig"]


class SinkRig:
    """A sink process with its heartbeat listener, the stand-in analyzer feeding it and the
    private bus directory; the subclass builds them, ``close`` frees them."""

    bus_dir: Path
    proc: subprocess.Popen[bytes]
    hb: HeartbeatListener
    analyzer: StandInAnalyzer

    def close(self) -> tuple[int, str]:
        """Stop the sink (SIGTERM) and free the rest; the sink's exit code and stderr."""
        code, err = stop(self.proc)
        self.hb.close()
        self.analyzer.close()
        shutil.rmtree(self.bus_dir, ignore_errors=True)
        return code, err
