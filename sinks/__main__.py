"""CASA sinks: write what the analyzers publish to the JSONL logs, or export it as traces.

usage: python -m sinks jsonl   [--instances N] [--bus-dir DIR] [--backlog-max-kb KB]
       python -m sinks otel    [--instances N] [--bus-dir DIR]
       python -m sinks webhook [--instances N] [--bus-dir DIR]
       python -m sinks program [--instances N] [--bus-dir DIR]

Separately restartable processes; each subscribes to ``analyzer.*`` on every analyzer stream
(``analyzer-0`` .. ``analyzer-(N-1)``) and publishes its own heartbeat (topic
``sinks.heartbeat``, stream ``sinks-<kind>``) with its counters every second.

Settings come from the environment, after a ``.env`` file in the working directory (which never
overrides it): log paths for ``jsonl`` (see sinks/jsonl.py), the OTLP endpoint for ``otel`` (see
sinks/otel_export.py); the notification sinks read the ``notify`` section of config/casa.json
(sinks/notify_config.py). Runs as the unprivileged ``casa`` user. SIGHUP reopens the log files (after
rotation); SIGTERM/SIGINT write what is queued, send a last heartbeat and exit.

Caveat: ``otel`` with no endpoint configured logs that tracing is off and only heartbeats
(``tracing_enabled=0``), and ``webhook`` / ``program`` without a url / argv log that they are
disabled and only heartbeat (``notify_enabled=0``), so a supervisor neither restarts them in a
loop nor shows them as failed.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import zmq

import bus
from bus.runtime import tune_gc
from bus.envelope import Envelope
from sinks.off import SinkOff
from sinks.checkpoint import PositionStore, SinkPositions
from sinks.envfile import load_env_file

POLL_TIMEOUT_MS = 200
SINK_STAGE = "sinks"
ANALYZER_TOPICS = ["analyzer."]
NOTIFY_TOPICS = ["analyzer.decision"]      # (+ analyzer.heartbeat, added by the subscriber)
RESPONDER_PREFIX = "responder."

log = logging.getLogger("casa.sinks")


class SinkCore(Protocol):
    """What the loop needs from a sink (JsonlSink, TraceSink)."""

    def handle(self, env: Envelope) -> None: ...
    def on_loss(self, stream: str, topic: str, lost: int) -> None: ...
    def accepted(self) -> tuple[int, ...]: ...
    def resolved(self) -> tuple[int, ...]: ...
    def held(self) -> int: ...
    def drain(self) -> None: ...
    def reopen_all(self, why: str) -> None: ...
    def close(self) -> None: ...
    def counters(self) -> dict[str, int]: ...


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sinks", description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m sinks jsonl                 # logs under /var/log/casa\n"
               "  CASA_LOG_DIR=/tmp/casa python -m sinks jsonl\n"
               "  CASA_OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318/v1/traces python -m sinks otel\n"
               "  CASA_CONFIG_PATH=/etc/casa.json python -m sinks webhook   # notify.webhook.url\n")
    parser.add_argument("kind", choices=["jsonl", "otel", "webhook", "program"], help="which sink to run")
    parser.add_argument("--instances", type=int, default=None,
                        help="number of analyzer instances (default $CASA_ANALYZER_INSTANCES or 1)")
    parser.add_argument("--bus-dir", type=Path, default=None, help="bus directory (default $CASA_BUS_DIR)")
    parser.add_argument("--env-file", type=Path, default=Path(".env"), help="optional .env file")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="checkpoint directory (default $CASA_STATE_DIR or /var/lib/casa)")
    parser.add_argument("--no-checkpoint", action="store_true",
                        help="neither restore nor save the input positions")
    parser.add_argument("--backlog-max-kb", type=int, default=None, metavar="KB",
                        help="jsonl: records kept in memory per file while it cannot be written, "
                             "beyond which they are dropped and counted (default 65536)")
    args = parser.parse_args(argv)
    if args.instances is not None and args.instances < 1:
        parser.error("--instances must be at least 1")
    if args.backlog_max_kb is not None and args.backlog_max_kb < 1:
        parser.error("--backlog-max-kb must be at least 1")
    return args


@dataclass(slots=True)
class Flags:
    """Signal flags: set by handlers, acted on in the loop."""

    stop: bool = False
    reopen: bool = False


def install_signals(flags: Flags) -> None:
    def stop(_sig: int, _frame: Any) -> None:
        flags.stop = True

    def hup(_sig: int, _frame: Any) -> None:
        flags.reopen = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, hup)


def receive_into(core: SinkCore, sub: bus.Subscriber, sock: zmq.Socket, max_messages: int = 256) -> int:
    """Decode and handle waiting messages one at a time.

    One at a time, not a batch from ``sub.receive()``: the subscriber reports a sequence gap
    (``on_loss``) while decoding the message after the gap, and the core must have handled every
    message before the gap by then, or it would blame the loss on the wrong sessions.
    Returns how many messages were read.
    """
    for n in range(max_messages):
        try:
            frames = sock.recv_multipart(flags=zmq.NOBLOCK)
        except zmq.Again:
            return n
        env = sub.handle_frames(frames)
        if env is not None:
            core.handle(env)
    return max_messages


def position_store(stream: str, args: argparse.Namespace) -> PositionStore | None:
    """Where this sink keeps its input positions; None with --no-checkpoint."""
    if getattr(args, "no_checkpoint", False):
        return None
    state_dir = getattr(args, "state_dir", None) or Path(os.environ.get("CASA_STATE_DIR", "/var/lib/casa"))
    return PositionStore(state_dir / f"{stream}.json")


def serve(core: SinkCore, stream: str, args: argparse.Namespace, flags: Flags,
          topics: list[str] = ANALYZER_TOPICS, clock: Callable[[], float] = time.monotonic) -> int:
    """The poll loop: analyzer envelopes -> core; heartbeats; signals. Returns the exit code."""
    ctx = zmq.Context()
    streams = bus.analyzer_streams(args.instances)
    if any(t.startswith(RESPONDER_PREFIX) for t in topics):
        streams.append("responder")            # its results go to alert.log (jsonl)
    sub_sock = bus.connect_subscriber(ctx, streams, topics, args.bus_dir)
    sub = bus.Subscriber(sub_sock, topics, on_loss=core.on_loss)
    positions = SinkPositions(position_store(stream, args), clock)
    positions.restore(sub.tracker)      # the first message after a restart reveals the gap
    pub = bus.Publisher(bus.bind_publisher(ctx, stream, args.bus_dir), SINK_STAGE, stream)
    poller = zmq.Poller()
    poller.register(sub_sock, zmq.POLLIN)
    log.info("sink running | stream=%s analyzers=%s", stream, ",".join(streams))

    def counters() -> dict[str, Any]:
        return {**core.counters(), **sub.counters.as_dict(), **positions.counters(sub.tracker)}
    try:
        while not flags.stop:
            n = receive_into(core, sub, sub_sock) if poller.poll(POLL_TIMEOUT_MS) else 0
            core.drain()
            positions.after_read(core, sub, n)     # saves only what is written or exported
            if flags.reopen:
                flags.reopen = False
                core.reopen_all("SIGHUP")
            if pub.heartbeat_due(clock()):
                sub.check_liveness()
                pub.heartbeat(counters(), clock())
        receive_into(core, sub, sub_sock, 10_000)  # what already arrived is written, not lost
    finally:
        core.close()
        positions.final_save(core, sub)
        final = counters()
        pub.heartbeat(final, clock())
        log.info("sink stopped | stream=%s %s", stream, " ".join(f"{k}={v}" for k, v in final.items()))
        sub_sock.close(0)
        pub.sock.close(linger=500)
        ctx.term()
    return 0


def build_notify_core(kind: str) -> SinkCore | None:
    """The webhook or program sink; None when casa.json does not configure it (disabled)."""
    from sinks.notify_config import config_path, load_notify
    config = load_notify()                 # NotifyConfigError (a ValueError): the sink does not start
    if kind == "webhook":
        if not config.webhook.enabled:
            log.warning("webhook sink disabled | reason=no url config=%s field=notify.webhook.url", config_path())
            return None
        from sinks.webhook import build_webhook_sink
        return build_webhook_sink(config.webhook)
    if not config.program.enabled:
        log.warning("program sink disabled | reason=no argv config=%s field=notify.program.argv", config_path())
        return None
    from sinks.program import build_program_sink
    return build_program_sink(config.program, secrets=(config.webhook.secret_env,))


def build_core(kind: str, backlog_max_kb: int | None = None) -> SinkCore | None:
    """The sink core for ``kind``; None when it has nothing to do (otel without an endpoint,
    webhook/program not configured)."""
    if kind in ("webhook", "program"):
        return build_notify_core(kind)
    if kind == "jsonl":
        from sinks.jsonl import BACKLOG_MAX_BYTES, JsonlSink, LogPaths
        paths = LogPaths.from_env()
        problems = paths.problems()
        if problems:
            raise ValueError("; ".join(problems))
        log.info("writing JSONL logs | events=%s sessions=%s audit=%s alert=%s",
                 paths.events, paths.sessions, paths.audit, paths.alert)
        backlog = backlog_max_kb * 1024 if backlog_max_kb else BACKLOG_MAX_BYTES
        return JsonlSink.from_paths(paths, backlog_max_bytes=backlog)
    from sinks.otel import OtelSettings, TraceSink
    settings = OtelSettings.from_env()
    if settings is None:
        return None
    log.info("exporting traces | endpoint=%s service=%s", settings.endpoint, settings.service_name)
    return TraceSink.from_settings(settings, logs=build_otel_logs(settings))


def build_otel_logs(settings: Any) -> Any:
    """The decisions' OTLP log records next to the traces (sinks/otel_logs.py); None when
    casa.json turns them off (notify.otel_logs.enabled)."""
    from sinks.notify_config import load_notify
    from sinks.otel_logs import build_decision_logs, logs_endpoint
    config = load_notify().otel_logs
    if not config.enabled:
        log.info("decision log records off | field=notify.otel_logs.enabled")
        return None
    endpoint = logs_endpoint(settings.endpoint, os.environ)
    log.info("exporting decisions as OTLP log records | endpoint=%s min_action=%s", endpoint, config.min_action)
    return build_decision_logs(endpoint, settings.service_name, settings.host, settings.id_namespace,
                               config.min_action, settings.timeout_s)


class TracingOff(SinkOff):
    """The otel sink without an endpoint (sinks/off.py): ``tracing_enabled=0``."""

    __slots__ = ()
    ENABLED = "tracing_enabled"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    load_env_file(args.env_file)
    flags = Flags()
    install_signals(flags)
    try:
        core = build_core(args.kind, args.backlog_max_kb)
    except ValueError as exc:
        log.error("cannot start the %s sink | reason=%s", args.kind, exc)
        return 1
    # The notification sinks read decisions only: the event flood is never even decoded there.
    # The log and trace sinks also read the responder's results (alert.log, the trace).
    topics = NOTIFY_TOPICS if args.kind in ("webhook", "program") else ANALYZER_TOPICS + [RESPONDER_PREFIX]
    if core is None and args.kind in ("webhook", "program"):
        from sinks.notify import NotifyOff
        core, topics = NotifyOff(), ["analyzer.heartbeat"]
    elif core is None:
        log.warning("tracing is off: no OTLP endpoint set | variables=CASA_OTEL_EXPORTER_OTLP_ENDPOINT,"
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,OTEL_EXPORTER_OTLP_ENDPOINT")
        core, topics = TracingOff(), ["analyzer.heartbeat"]
    tune_gc()
    try:
        return serve(core, f"sinks-{args.kind}", args, flags, topics)
    except bus.BusError as exc:
        log.error("cannot use the bus | reason=%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
