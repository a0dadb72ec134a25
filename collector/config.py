"""The collector's part of config/casa.json: limits, ring buffer, pid file, and the profiles.

    "collector": {"max_args": 16, "max_arg_len": 128, "max_path_len": 4096,
                  "ringbuf_pages": 256, "pid_file": "/var/run/casa.pid"}

Every key is optional (defaults above). Errors name the file and the field (ConfigError).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents import Profile, ProfileError, load_config, load_profiles
from agents.profiles import DEFAULT_CONFIG_PATH
from collector.loader import Limits

__all__ = ["CollectorConfig", "ConfigError", "load", "version_of", "DEFAULT_PID_FILE"]

DEFAULT_PID_FILE = "/var/run/casa.pid"
_KNOWN = {"max_args", "max_arg_len", "max_path_len", "ringbuf_pages", "pid_file"}


class ConfigError(ValueError):
    """config/casa.json is unusable; the message names the file and field."""


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    path: Path
    limits: Limits
    pid_file: str
    profiles: tuple[Profile, ...]


def _int(where: str, raw: dict[str, Any], key: str, default: int, lo: int, hi: int,
         power_of_two: bool = False) -> int:
    v = raw.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ConfigError(f"{where}.{key}: must be an integer from {lo} to {hi}, got {v!r}")
    if power_of_two and v & (v - 1):
        raise ConfigError(f"{where}.{key}: must be a power of two, got {v}")
    return v


def load(path: str | Path | None = None) -> CollectorConfig:
    """Read and validate; ConfigError (with the file name) on any problem."""
    p = Path(path) if path else DEFAULT_CONFIG_PATH
    try:
        data = load_config(p)
        profiles = load_profiles(data=data)
    except ProfileError as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(str(p)) else f"{p}: {msg}") from None
    raw = data.get("collector", {})
    where = f"{p}: collector"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be an object")
    unknown = set(raw) - _KNOWN
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(_KNOWN)}")
    limits = Limits(
        max_args=_int(where, raw, "max_args", 16, 1, 64),
        max_arg_len=_int(where, raw, "max_arg_len", 128, 16, 4096),
        max_path_len=_int(where, raw, "max_path_len", 4096, 256, 4096, power_of_two=True),
        ringbuf_pages=_int(where, raw, "ringbuf_pages", 256, 1, 65536, power_of_two=True),
    )
    pid_file = raw.get("pid_file", DEFAULT_PID_FILE)
    if not isinstance(pid_file, str) or not pid_file:
        raise ConfigError(f"{where}.pid_file: must be a non-empty path string")
    return CollectorConfig(path=p, limits=limits, pid_file=pid_file, profiles=profiles)


def version_of(path: str | Path | None) -> str:
    """First 12 hex of the sha256 of the config file's bytes (as rules_version is for rules.json),
    so ``casa status`` and ``casa reload`` show which file is in force; "" if it cannot be read."""
    try:
        return hashlib.sha256(Path(path or DEFAULT_CONFIG_PATH).read_bytes()).hexdigest()[:12]
    except OSError:
        return ""
