"""CASA sinks: write what the analyzers publish to the JSONL logs, or export it as traces.

usage: python -m sinks jsonl   [--instances N] [--bus-dir DIR] [--backlog-max-kb KB]
       python -m sinks otel    [--instances N] [--bus-dir DIR] [--config FILE]
       python -m sinks webhook [--instances N] [--bus-dir DIR] [--config FILE]
       python -m sinks program [--instances N] [--bus-dir DIR] [--config FILE]

Separately restartable processes; each subscribes to ``analyzer.*`` on every analyzer stream
(``analyzer-0`` .. ``analyzer-(N-1)``) and publishes its own heartbeat (topic
``sinks.heartbeat``, stream ``sinks-<kind>``) with its counters every second.

Settings come from the environment, after a ``.env`` file in the working directory (which never
overrides it): log paths for ``jsonl`` (see sinks/jsonl.py), the OTLP endpoint for ``otel`` (see
sinks/otel_export.py); the notification sinks read the ``notify`` section of config/casa.json
(sinks/notify_config.py; ``--config``). Which core each kind runs: sinks/kinds.py; this module
is the wiring that hands it to the stage runtime (stage/). Runs as the unprivileged ``casa`` user. SIGHUP reopens the log files (after
rotation); SIGTERM/SIGINT write what is queued, send a last heartbeat and exit.

Caveat: ``otel`` with no endpoint configured logs that tracing is off and only heartbeats
(``tracing_enabled=0``), and ``webhook`` / ``program`` without a url / argv log that they are
disabled and only heartbeat (``notify_enabled=0``), so a supervisor neither restarts them in a
loop nor shows them as failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import zmq

import bus
from sinks.checkpoint import PositionStore, SinkPositions
from sinks.envfile import load_env_file
from sinks.kinds import KINDS, RESPONDER_PREFIX, SinkCore, build
from sinks.idle import TracingOff   # noqa: F401  (tests/bus/test_bus_counters.py imports it from here)
from stage import Flags, options
from stage.runtime import Hooks, Runtime, SubscriberSource

POLL_TIMEOUT_MS = 200
SINK_STAGE = "sinks"
FINAL_READ_MESSAGES = 10_000     # at the stop: what already arrived is written, not lost

EXAMPLES = """examples:
  python -m sinks jsonl                 # logs under /var/log/casa
  CASA_LOG_DIR=/tmp/casa python -m sinks jsonl
  CASA_OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318/v1/traces python -m sinks otel
  python -m sinks webhook --config /etc/casa.json      # notify.webhook.url
"""

log = logging.getLogger("casa.sinks")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = options.parser("python -m sinks", __doc__, EXAMPLES)
    parser.add_argument("kind", choices=KINDS, help="which sink to run")
    options.add(parser, "instances", "bus-dir", "state-dir", "no-checkpoint", "log-level", "config",
                config="config/casa.json, for its notify section (default $CASA_CONFIG_PATH or the "
                       "checkout's)",
                no_checkpoint="neither restore nor save the input positions")
    parser.add_argument("--env-file", type=Path, default=Path(".env"),
                        help="optional .env file of sink settings; never overrides the environment")
    parser.add_argument("--backlog-max-kb", type=int, default=None, metavar="KB",
                        help="jsonl: records kept in memory per file while it cannot be written, "
                             "beyond which they are dropped and counted (default 65536)")
    args = parser.parse_args(argv)
    if args.instances is not None and args.instances < 1:
        parser.error("--instances must be at least 1")
    if args.backlog_max_kb is not None and args.backlog_max_kb < 1:
        parser.error("--backlog-max-kb must be at least 1")
    return options.resolve(args)


class SinkHooks(Hooks):
    """A sink core on the runtime: drain and save durable positions every pass, reopen the
    files at SIGHUP, write what already arrived at the stop."""

    def __init__(self, core: SinkCore, sub: bus.Subscriber, positions: SinkPositions) -> None:
        self.core, self.sub, self.positions = core, sub, positions
        self.source = SubscriberSource(sub, core.handle)

    def each_pass(self, read: int) -> None:
        self.core.drain()
        self.positions.after_read(self.core, self.sub, read)   # saves only what is written or exported

    def reload(self) -> None:
        self.core.reopen_all("SIGHUP")

    def counters(self) -> dict[str, Any]:
        return {**self.core.counters(), **self.sub.counters.as_dict(),
                **self.positions.counters(self.sub.tracker)}

    def stopping(self) -> None:
        self.source.read(FINAL_READ_MESSAGES)
        self.core.close()

    def checkpoint(self, clean: bool) -> None:
        if clean:
            self.positions.final_save(self.core, self.sub)


def wire(core: SinkCore, kind: str, topics: list[str], args: argparse.Namespace,
         flags: Flags) -> Runtime:
    """Sockets, positions and hooks of ``sinks-<kind>`` around ``core``."""
    stream = f"sinks-{kind}"
    ctx = zmq.Context()
    streams = bus.analyzer_streams(args.instances)
    if any(t.startswith(RESPONDER_PREFIX) for t in topics):
        streams.append("responder")            # its results go to alert.log (jsonl)
    sub = bus.Subscriber(bus.connect_subscriber(ctx, streams, topics, args.bus_dir), topics,
                         on_loss=core.on_loss)
    store = None if args.no_checkpoint else PositionStore(args.state_dir / f"{stream}.json")
    positions = SinkPositions(store)
    positions.restore(sub.tracker)      # the first message after a restart reveals the gap
    pub = bus.Publisher(bus.bind_publisher(ctx, stream, args.bus_dir), SINK_STAGE, stream)
    hooks = SinkHooks(core, sub, positions)
    return Runtime("sink", hooks, hooks.source, pub, ctx, ident={"stream": stream},
                   running={"analyzers": ",".join(streams)}, poll_ms=POLL_TIMEOUT_MS, linger_ms=500,
                   flags=flags)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options.setup_logging(args.log_level)
    load_env_file(args.env_file)
    flags = Flags().install()          # a stop during start-up still ends with the stopped line
    try:
        core, topics = build(args.kind, args.backlog_max_kb, args.config)
    except ValueError as exc:
        log.error("cannot start the %s sink | reason=%s", args.kind, exc)
        return 1
    try:
        runtime = wire(core, args.kind, topics, args, flags)
    except bus.BusError as exc:
        log.error("cannot use the bus | reason=%s", exc)
        return 1
    return runtime.run()


if __name__ == "__main__":
    sys.exit(main())
