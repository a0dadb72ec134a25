"""The one runtime every CASA stage runs on (docs/operating.md, "Swap a stage").

A stage is its pure core (what it does with a message) plus a few lines of wiring in its
``__main__.py``: build the core, the sockets and a :class:`~stage.runtime.Hooks` object, and hand
them to :class:`~stage.runtime.Runtime`, which owns what every stage does the same way:

* the poll loop over a :class:`~stage.runtime.Source` (a bus subscriber read one message at a
  time, or the collector's eBPF ring buffer);
* signals, which only set :class:`~stage.flags.Flags` (SIGTERM/SIGINT stop, SIGHUP reload);
* heartbeat and checkpoint cadence, GC tuning, the final ``<stage> stopped | counters`` line;
* the state files (:mod:`stage.state_file`: atomic, fsync'd, one version key, one parser for
  saved bus positions) and the command-line flags every stage spells the same
  (:mod:`stage.options`).
"""

from stage.flags import Flags
from stage.runtime import Hooks, Runtime, Source, SubscriberSource
from stage.state_file import StateFile, StateFileError, read_positions

__all__ = ["Flags", "Hooks", "Runtime", "Source", "SubscriberSource", "StateFile", "StateFileError",
           "read_positions"]
