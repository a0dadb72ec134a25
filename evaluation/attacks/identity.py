"""The two agent identities every scenario runs as: root, and the unprivileged ``casa-attack``.

An agent in a container often runs as root; on a workstation it runs as its user. Detection must
hold for both (issue 13), so the suite runs each scenario twice. ``casa-attack`` is a dedicated
system user made for the suite (never ``casa``, which owns the bus, and never ``casa-agent``,
which the OpenClaw evaluation uses). Its passwd home exists on the host as an empty directory;
inside the sandbox it is bind-mounted from the scenario's scratch directory, as /root is for root.
"""

from __future__ import annotations

import pwd
import subprocess
from dataclasses import dataclass

__all__ = ["Identity", "ATTACK_USER", "ATTACK_HOME", "ensure_attack_user", "identities", "IDENTITY_NAMES"]

ATTACK_USER = "casa-attack"
ATTACK_HOME = "/home/casa-attack"
IDENTITY_NAMES = ("root", "user")


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the launcher runs as, and the home the sandbox backs with scratch."""

    name: str          # "root" | "user" (the label in results)
    user: str
    uid: int
    gid: int
    home: str

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    def as_spec(self) -> dict[str, object]:
        return {"name": self.name, "user": self.user, "uid": self.uid, "gid": self.gid, "home": self.home}


def ensure_attack_user() -> pwd.struct_passwd:
    """Create ``casa-attack`` (system user, own group, bash, empty home) unless it exists."""
    try:
        return pwd.getpwnam(ATTACK_USER)
    except KeyError:
        pass
    subprocess.run(["useradd", "--system", "--user-group", "--create-home", "--home-dir", ATTACK_HOME,
                    "--shell", "/bin/bash", ATTACK_USER], check=True)
    return pwd.getpwnam(ATTACK_USER)


def identities(names: tuple[str, ...] = IDENTITY_NAMES) -> list[Identity]:
    """The identities to run, creating the unprivileged user when it is asked for."""
    out = []
    for name in names:
        if name == "root":
            out.append(Identity("root", "root", 0, 0, "/root"))
        elif name == "user":
            pw = ensure_attack_user()
            out.append(Identity("user", pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir))
        else:
            raise ValueError(f"unknown identity {name!r} (known: {IDENTITY_NAMES})")
    return out
