"""The unprivileged ``casa`` user the stages run as in production, as the tests need it.

When the tests run as root (as CI does), stage processes are started as ``casa`` in directories
``casa`` may use, so that a test fails where production would (a file the stage cannot open, a
socket it cannot bind); otherwise they run as the test's own user.
"""

from __future__ import annotations

import grp
import os
import pwd
import tempfile
from pathlib import Path

__all__ = ["CASA_USER", "as_casa", "shared_dir"]

CASA_USER = "casa"


def as_casa() -> bool:
    """True where a stage can be run as ``casa``: we are root and the user exists."""
    if os.geteuid() != 0:
        return False
    try:
        pwd.getpwnam(CASA_USER)
    except KeyError:
        return False
    return True


def shared_dir(prefix: str, owner_casa: bool = False) -> Path:
    """A temporary directory the casa user can use (pytest's tmp_path is private to root).

    Bus and state directories are root:casa 0770, as setup.sh makes /run/casa; with
    ``owner_casa`` (log directories) casa owns it, 0750, as setup.sh makes /var/log/casa."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(d, 0o750 if owner_casa else 0o770)
    if as_casa():
        uid = pwd.getpwnam(CASA_USER).pw_uid if owner_casa else 0
        os.chown(d, uid, grp.getgrnam(CASA_USER).gr_gid)
    return d
