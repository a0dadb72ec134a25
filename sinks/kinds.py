"""Which core each sink kind runs, and what it subscribes to (``python -m sinks <kind>``).

* ``jsonl``: the four JSONL logs (sinks/jsonl.py), from the log paths in the environment;
* ``otel``: traces, plus the decisions as OTLP log records (sinks/otel.py, sinks/otel_logs.py);
* ``webhook`` / ``program``: notifications (sinks/notify.py), from the ``notify`` section of
  config/casa.json.

A kind with nothing to do (no OTLP endpoint, no webhook url or program argv) runs an idle core
(sinks/idle.py) that only heartbeats.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Protocol

from bus.envelope import Envelope
from sinks.idle import IDLE_TOPICS, NotifyOff, TracingOff

__all__ = ["SinkCore", "KINDS", "build", "build_core", "topics_of"]

KINDS = ("jsonl", "otel", "webhook", "program")
NOTIFY_KINDS = ("webhook", "program")
ANALYZER_TOPICS = ["analyzer."]
NOTIFY_TOPICS = ["analyzer.decision"]      # (+ analyzer.heartbeat, added by the subscriber)
RESPONDER_PREFIX = "responder."

log = logging.getLogger("casa.sinks")


class SinkCore(Protocol):
    """What the sink stage needs from a core (JsonlSink, TraceSink, NotifySink, IdleSink)."""

    def handle(self, env: Envelope) -> None: ...
    def on_loss(self, stream: str, topic: str, lost: int) -> None: ...
    def accepted(self) -> tuple[int, ...]: ...
    def resolved(self) -> tuple[int, ...]: ...
    def held(self) -> int: ...
    def drain(self) -> None: ...
    def reopen_all(self, why: str) -> None: ...
    def close(self) -> None: ...
    def counters(self) -> dict[str, int]: ...


def topics_of(kind: str) -> list[str]:
    """The notification sinks read decisions only (the event flood is never even decoded there);
    the log and trace sinks also read the responder's results (alert.log, the trace)."""
    return list(NOTIFY_TOPICS) if kind in NOTIFY_KINDS else ANALYZER_TOPICS + [RESPONDER_PREFIX]


def build(kind: str, backlog_max_kb: int | None = None,
          config: Path | None = None) -> tuple[SinkCore, list[str]]:
    """The core of ``kind`` and its topics; an idle core when it has nothing to do. ValueError
    (NotifyConfigError, bad log paths) when it must not start."""
    core = build_core(kind, backlog_max_kb, config)
    if core is not None:
        return core, topics_of(kind)
    if kind in NOTIFY_KINDS:
        return NotifyOff(), list(IDLE_TOPICS)
    log.warning("tracing is off: no OTLP endpoint set | variables=CASA_OTEL_EXPORTER_OTLP_ENDPOINT,"
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,OTEL_EXPORTER_OTLP_ENDPOINT")
    return TracingOff(), list(IDLE_TOPICS)


def build_notify_core(kind: str, config: Path | None = None) -> SinkCore | None:
    """The webhook or program sink; None when casa.json does not configure it (disabled)."""
    from sinks.notify_config import config_path, load_notify
    settings = load_notify(config)       # NotifyConfigError (a ValueError): the sink does not start
    where = config or config_path()
    if kind == "webhook":
        if not settings.webhook.enabled:
            log.warning("webhook sink disabled | reason=no url config=%s field=notify.webhook.url", where)
            return None
        from sinks.webhook import build_webhook_sink
        return build_webhook_sink(settings.webhook)
    if not settings.program.enabled:
        log.warning("program sink disabled | reason=no argv config=%s field=notify.program.argv", where)
        return None
    from sinks.program import build_program_sink
    return build_program_sink(settings.program, secrets=(settings.webhook.secret_env,))


def build_core(kind: str, backlog_max_kb: int | None = None, config: Path | None = None) -> SinkCore | None:
    """The sink core for ``kind``; None when it has nothing to do (otel without an endpoint,
    webhook/program not configured)."""
    if kind in NOTIFY_KINDS:
        return build_notify_core(kind, config)
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
    return TraceSink.from_settings(settings, logs=build_otel_logs(settings, config))


def build_otel_logs(settings: Any, config: Path | None = None) -> Any:
    """The decisions' OTLP log records next to the traces (sinks/otel_logs.py); None when
    casa.json turns them off (notify.otel_logs.enabled)."""
    from sinks.notify_config import load_notify
    from sinks.otel_logs import build_decision_logs, logs_endpoint
    logs = load_notify(config).otel_logs
    if not logs.enabled:
        log.info("decision log records off | field=notify.otel_logs.enabled")
        return None
    endpoint = logs_endpoint(settings.endpoint, os.environ)
    log.info("exporting decisions as OTLP log records | endpoint=%s min_action=%s", endpoint, logs.min_action)
    return build_decision_logs(endpoint, settings.service_name, settings.host, settings.id_namespace,
                               logs.min_action, settings.timeout_s)
