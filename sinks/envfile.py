"""The ``.env`` file: optional settings read from the working directory at start-up.

Same rules as the original CASA's: the file is read if present, and a value
never overrides a variable that is already set in the environment. Syntax, one setting a line:

    # a comment
    KEY=VALUE
    export KEY=VALUE
    KEY="a value with spaces"     (one pair of matching quotes, ' or ", is stripped)

Blank lines and comment lines are skipped; a line without ``=`` or with an invalid name is
reported (file and line number) and skipped. Values are never logged: they may be secrets.

**What a .env may set** (:data:`ALLOWED`): the sinks' own settings -- the log paths
(``CASA_LOG_DIR``, ``CASA_{EVENTS,SESSIONS,AUDIT,ALERT}_LOG_PATH`` and the aliases
``CASA_EVENTS_LOG``, ``CASA_SESSIONS_LOG``), the trace export (``CASA_OTEL_EXPORTER_OTLP_ENDPOINT``,
``CASA_OTEL_EXPORTER_OTLP_INSECURE``, ``CASA_OTEL_SERVICE_NAME``, ``OTEL_SERVICE_NAME`` and the
OTLP exporter's ``OTEL_EXPORTER_OTLP_*``), and the webhook's signing secret (``CASA_WEBHOOK_*``;
sinks/webhook.py). Anything else -- the bus and state directories, the
analyzer count, the rules and config paths, ``PYTHONPATH``, ``LD_PRELOAD`` ... -- is reported by
name and ignored: those belong to supervisord.conf, and a file next to the code must not move
the pipeline's sockets or load code. Log paths are further checked by sinks/jsonl.py (a path
outside a directory only root or casa can write, or a non-regular file such as /dev/null, is
refused).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EnvLine", "parse_env_text", "load_env_file", "DEFAULT_ENV_FILE", "ALLOWED", "allowed"]

DEFAULT_ENV_FILE = Path(".env")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
ALLOWED = ("CASA_LOG_DIR", "CASA_EVENTS_LOG_PATH", "CASA_EVENTS_LOG", "CASA_SESSIONS_LOG_PATH",
           "CASA_SESSIONS_LOG", "CASA_AUDIT_LOG_PATH", "CASA_ALERT_LOG_PATH",
           "CASA_OTEL_EXPORTER_OTLP_ENDPOINT", "CASA_OTEL_EXPORTER_OTLP_INSECURE",
           "CASA_OTEL_SERVICE_NAME", "OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_*",
           "CASA_OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
           "CASA_WEBHOOK_*")     # the webhook's signing secret (notify.webhook.secret_env)


def allowed(key: str) -> bool:
    """Whether a .env file may set ``key`` (:data:`ALLOWED`; a trailing ``*`` is a prefix)."""
    return any(key.startswith(a[:-1]) if a.endswith("*") else key == a for a in ALLOWED)

log = logging.getLogger("casa.sinks")


@dataclass(frozen=True, slots=True)
class EnvLine:
    """One accepted ``KEY=VALUE`` setting and where it came from (for error messages)."""

    key: str
    value: str
    lineno: int


def _unquote(value: str) -> str:
    """Strip one pair of matching quotes, as the original does; nothing else is interpreted."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def parse_env_text(text: str, source: str = ".env") -> tuple[list[EnvLine], list[str]]:
    """Parse ``.env`` text; return the settings in file order and one problem message per bad line."""
    settings: list[EnvLine] = []
    problems: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _NAME.match(key):
            problems.append(f"{source}:{lineno}: expected KEY=VALUE with a valid variable name; line skipped")
            continue
        settings.append(EnvLine(key=key, value=_unquote(value.strip()), lineno=lineno))
    return settings, problems


def load_env_file(path: Path = DEFAULT_ENV_FILE,
                  environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Apply ``path`` to ``environ`` (default os.environ) without overriding; return the keys set.

    A missing file is normal (nothing happens); an unreadable one is logged and ignored, because
    a broken optional file must not stop a stage.
    """
    env = os.environ if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.error("cannot read the .env file; continuing without it | path=%s error=%s", path, exc)
        return []
    settings, problems = parse_env_text(text, str(path))
    for problem in problems:
        log.warning("ignored a line of the .env file | problem=%s", problem)
    refused = [s.key for s in settings if not allowed(s.key)]
    if refused:
        log.warning("ignored settings a .env file may not make (see sinks/envfile.py) | path=%s keys=%s",
                    path, ",".join(refused))
    applied: list[str] = []
    for s in settings:
        if allowed(s.key) and s.key not in env:          # the environment always wins
            env[s.key] = s.value
            applied.append(s.key)
    if applied:
        log.info("loaded settings from the .env file | path=%s keys=%s", path, ",".join(applied))
    return applied
