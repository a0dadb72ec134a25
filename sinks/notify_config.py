"""The ``notify`` section of config/casa.json: where the notification sinks send decisions.

    "notify": {
      "webhook": {"url": "", "min_action": "ALERT", "timeout_s": 5, "retries": 5,
                  "backoff_initial_s": 0.5, "backoff_max_s": 30, "deadline_s": 120,
                  "queue_size": 1000, "secret_env": "CASA_WEBHOOK_SECRET"},
      "program": {"argv": [], "min_action": "ALERT", "queue_size": 1000,
                  "restart_backoff_initial_s": 0.5, "restart_backoff_max_s": 30, "deadline_s": 120},
      "otel_logs": {"min_action": "ALERT"}
    }

Why the configuration file and not the environment: casa.json is root's (the collector refuses
to start when anyone else could change it, docs/security.md), so the agent's user can neither
point alerts at its own server nor run its own program as ``casa``. Only the webhook's secret
comes from the environment (or the sinks' ``.env``, root:casa 0640): never from a file the code
lives next to, and never logged. An empty ``url`` / ``argv`` (the default) leaves that sink
disabled. Every key is optional; a wrong one is a :class:`NotifyConfigError` naming the file
and the field, and the sink does not start.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agents import ProfileError, load_config
from agents.profiles import DEFAULT_CONFIG_PATH

__all__ = ["NotifyConfigError", "WebhookSettings", "ProgramSettings", "OtelLogSettings",
           "NotifyConfig", "load_notify", "config_path", "ACTIONS", "DEFAULT_SECRET_ENV"]

ACTIONS = ("LOG", "ALERT")            # what min_action may be: the audit.log and alert.log rules
DEFAULT_SECRET_ENV = "CASA_WEBHOOK_SECRET"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class NotifyConfigError(ValueError):
    """The notify section is unusable; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    url: str = ""                      # "" = disabled
    min_action: str = "ALERT"
    timeout_s: float = 5.0             # one request: connect + send + response
    retries: int = 5                   # attempts after the first
    backoff_initial_s: float = 0.5     # doubled after every failed attempt ...
    backoff_max_s: float = 30.0        # ... up to this
    deadline_s: float = 120.0          # from the decision's arrival: later, it is given up (lost)
    queue_size: int = 1000             # decisions waiting; more are dropped and counted
    secret_env: str = DEFAULT_SECRET_ENV

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    @property
    def safe_url(self) -> str:
        """scheme://host:port only: a webhook URL's path or query often is a token."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


@dataclass(frozen=True, slots=True)
class ProgramSettings:
    argv: tuple[str, ...] = ()         # () = disabled; never a shell string
    min_action: str = "ALERT"
    queue_size: int = 1000
    restart_backoff_initial_s: float = 0.5
    restart_backoff_max_s: float = 30.0
    deadline_s: float = 120.0

    @property
    def enabled(self) -> bool:
        return bool(self.argv)


@dataclass(frozen=True, slots=True)
class OtelLogSettings:
    min_action: str = "ALERT"
    enabled: bool = True               # exported whenever the trace sink has an endpoint


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    webhook: WebhookSettings = WebhookSettings()
    program: ProgramSettings = ProgramSettings()
    otel_logs: OtelLogSettings = OtelLogSettings()


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get("CASA_CONFIG_PATH") or DEFAULT_CONFIG_PATH)


def _number(where: str, raw: Mapping[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    v = raw.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise NotifyConfigError(f"{where}.{key}: must be a number from {lo:g} to {hi:g}, got {v!r}")
    return float(v)


def _int(where: str, raw: Mapping[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    v = raw.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise NotifyConfigError(f"{where}.{key}: must be an integer from {lo} to {hi}, got {v!r}")
    return v


def _action(where: str, raw: Mapping[str, Any]) -> str:
    v = raw.get("min_action", "ALERT")
    if v not in ACTIONS:
        raise NotifyConfigError(f"{where}.min_action: must be one of {list(ACTIONS)}, got {v!r}")
    return v


def _section(where: str, data: Mapping[str, Any], key: str, known: set[str]) -> Mapping[str, Any]:
    raw = data.get(key, {})
    if not isinstance(raw, dict):
        raise NotifyConfigError(f"{where}.{key}: must be an object")
    unknown = set(raw) - known
    if unknown:
        raise NotifyConfigError(f"{where}.{key}: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
    return raw


def _webhook(where: str, raw: Mapping[str, Any]) -> WebhookSettings:
    url = raw.get("url", "")
    if not isinstance(url, str):
        raise NotifyConfigError(f"{where}.url: must be a string")
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise NotifyConfigError(f"{where}.url: must be an http:// or https:// URL with a host")
    secret_env = raw.get("secret_env", DEFAULT_SECRET_ENV)
    if not isinstance(secret_env, str) or not _ENV_NAME.match(secret_env):
        raise NotifyConfigError(f"{where}.secret_env: must be an environment variable name")
    return WebhookSettings(
        url=url, min_action=_action(where, raw),
        timeout_s=_number(where, raw, "timeout_s", 5.0, 0.05, 300.0),
        retries=_int(where, raw, "retries", 5, 0, 100),
        backoff_initial_s=_number(where, raw, "backoff_initial_s", 0.5, 0.0, 3600.0),
        backoff_max_s=_number(where, raw, "backoff_max_s", 30.0, 0.0, 3600.0),
        deadline_s=_number(where, raw, "deadline_s", 120.0, 0.1, 86400.0),
        queue_size=_int(where, raw, "queue_size", 1000, 1, 1_000_000), secret_env=secret_env)


def _program(where: str, raw: Mapping[str, Any]) -> ProgramSettings:
    argv = raw.get("argv", [])
    if not isinstance(argv, list) or not all(isinstance(a, str) and a and "\0" not in a for a in argv):
        raise NotifyConfigError(f"{where}.argv: must be a list of non-empty strings (an argv, not a shell "
                                "command line)")
    if argv and not os.path.isabs(argv[0]):
        raise NotifyConfigError(f"{where}.argv[0]: must be an absolute path (no PATH search)")
    return ProgramSettings(
        argv=tuple(argv), min_action=_action(where, raw),
        queue_size=_int(where, raw, "queue_size", 1000, 1, 1_000_000),
        restart_backoff_initial_s=_number(where, raw, "restart_backoff_initial_s", 0.5, 0.0, 3600.0),
        restart_backoff_max_s=_number(where, raw, "restart_backoff_max_s", 30.0, 0.0, 3600.0),
        deadline_s=_number(where, raw, "deadline_s", 120.0, 0.1, 86400.0))


def parse_notify(data: Mapping[str, Any], source: str = "casa.json") -> NotifyConfig:
    """The ``notify`` object of a parsed casa.json (absent: everything off but OTLP log records)."""
    where = f"{source}: notify"
    raw = data.get("notify", {})
    if not isinstance(raw, dict):
        raise NotifyConfigError(f"{where}: must be an object")
    unknown = set(raw) - {"webhook", "program", "otel_logs"}
    if unknown:
        raise NotifyConfigError(f"{where}: unknown field(s) {sorted(unknown)}")
    webhook = _section(where, raw, "webhook", set(WebhookSettings.__slots__))
    program = _section(where, raw, "program", set(ProgramSettings.__slots__))
    logs = _section(where, raw, "otel_logs", {"min_action", "enabled"})
    if not isinstance(logs.get("enabled", True), bool):
        raise NotifyConfigError(f"{where}.otel_logs.enabled: must be true or false")
    return NotifyConfig(webhook=_webhook(f"{where}.webhook", webhook),
                        program=_program(f"{where}.program", program),
                        otel_logs=OtelLogSettings(min_action=_action(f"{where}.otel_logs", logs),
                                                  enabled=logs.get("enabled", True)))


def load_notify(path: Path | None = None) -> NotifyConfig:
    """Read casa.json (``$CASA_CONFIG_PATH`` or the checkout's) and parse its notify section."""
    p = path or config_path()
    try:
        data = load_config(p)            # the one reader of casa.json (agents.profiles)
    except ProfileError as exc:
        raise NotifyConfigError(str(exc)) from None
    return parse_notify(data, str(p))
