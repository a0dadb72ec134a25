"""Where the JSONL sink writes its four logs, and which paths it refuses.

Paths come from the environment (and a .env file, see sinks/envfile.py):
``CASA_EVENTS_LOG_PATH`` (alias ``CASA_EVENTS_LOG``), ``CASA_SESSIONS_LOG_PATH``
(``CASA_SESSIONS_LOG``), ``CASA_AUDIT_LOG_PATH``, ``CASA_ALERT_LOG_PATH``; defaults
``$CASA_LOG_DIR/{events,sessions,audit,alert}.log`` with ``CASA_LOG_DIR`` defaulting to
``/var/log/casa``.

:meth:`LogPaths.problems` refuses (the sink does not start) a path that is not a regular file
(``/dev/null``: every record would vanish), a symlink, or one in a directory that anyone but root
and the sink's own user and group (casa) can write -- whoever can write there can swap the file,
or point it elsewhere (trust/paths.py).
"""

from __future__ import annotations

import grp
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from trust.paths import unsafe_writer

__all__ = ["LogPaths", "log_path_problem", "DEFAULT_LOG_DIR", "LOG_GROUP"]

LOG_GROUP = "casa"                       # the monitoring user's group: may read, may not write
DEFAULT_LOG_DIR = Path("/var/log/casa")

# (primary variable, alias or None, default file name)
_PATH_VARS = {
    "events": ("CASA_EVENTS_LOG_PATH", "CASA_EVENTS_LOG", "events.log"),
    "sessions": ("CASA_SESSIONS_LOG_PATH", "CASA_SESSIONS_LOG", "sessions.log"),
    "audit": ("CASA_AUDIT_LOG_PATH", None, "audit.log"),
    "alert": ("CASA_ALERT_LOG_PATH", None, "alert.log"),
}


@dataclass(frozen=True, slots=True)
class LogPaths:
    """Where the four logs go."""

    events: Path
    sessions: Path
    audit: Path
    alert: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "LogPaths":
        """Resolve every path: primary variable, then its alias, then ``$CASA_LOG_DIR/<name>``."""
        env = os.environ if environ is None else environ
        base = Path(env.get("CASA_LOG_DIR") or DEFAULT_LOG_DIR)
        paths = {}
        for name, (primary, alias, filename) in _PATH_VARS.items():
            value = env.get(primary) or (env.get(alias) if alias else None)
            paths[name] = Path(value) if value else base / filename
        return cls(**paths)

    def problems(self, environ: Mapping[str, str] | None = None) -> list[str]:
        """Why each path may not be used, naming the variable that chose it; [] when all are fine."""
        env = os.environ if environ is None else environ
        out = []
        for name, (primary, alias, _) in _PATH_VARS.items():
            path = getattr(self, name)
            var = primary if env.get(primary) else (alias if alias and env.get(alias) else "CASA_LOG_DIR")
            why = log_path_problem(Path(os.path.abspath(path)))
            if why:
                out.append(f"{var} gives {name} log {path}, which {why}")
        return out


def _trusted_ids() -> tuple[set[int], set[int]]:
    """Root, this process's user and group, and the casa group: who may write log directories."""
    uids, gids = {0, os.geteuid()}, {0, os.getegid()}
    try:
        gids.add(grp.getgrnam(LOG_GROUP).gr_gid)
    except KeyError:
        pass
    return uids, gids


def log_path_problem(path: Path) -> str | None:
    """None when records written to ``path`` stay where they are written and only root and the
    sink's own user or group can change them; else why not, as the end of a sentence."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        return f"cannot be examined ({exc.strerror})"
    if st is not None and stat.S_ISLNK(st.st_mode):
        return "is a symbolic link; name the file itself"
    if st is not None and not stat.S_ISREG(st.st_mode):
        return f"is not a regular file ({stat.filemode(st.st_mode)[0]}): records written there would be lost"
    uids, gids = _trusted_ids()
    unsafe = unsafe_writer(str(path), uids=uids, gids=gids, must_exist=False)
    if unsafe is not None:
        return (f"is unsafe: {unsafe.path} is {unsafe.who}; log paths must be in directories only "
                f"root or {LOG_GROUP} can write (default {DEFAULT_LOG_DIR})")
    return None
