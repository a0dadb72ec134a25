"""trust/strict_modes.py on a made-up tree: the one line that says which path, who and the fix."""

from __future__ import annotations

from tests.trust.made_up_trees import CASA_GID, DIR, FILE, ROOT_TREE, tree
from trust.strict_modes import check


def test_strict_modes_names_the_path_who_and_the_fix() -> None:
    entries = {**ROOT_TREE, "/opt/casa/collector": (0, CASA_GID, DIR | 0o775),
               "/opt/casa/collector/scope.py": (0, 0, FILE | 0o644),
               "/opt/casa/casa.json": (0, 0, FILE | 0o644), "/run": (0, 0, DIR | 0o755)}
    lstat, readlink = tree(entries)
    findings = check(["/opt/casa/collector/scope.py"], [("config file", "/opt/casa/casa.json", True),
                                                       (".env file", "/opt/casa/.env", False),
                                                       ("pid file directory", "/run", True)],
                     lstat=lstat, readlink=readlink)
    assert [f.line() for f in findings] == [
        f"refusing to run as root: code: /opt/casa/collector is writable by group {CASA_GID}; "
        "fix: chown root /opt/casa/collector and chmod go-w /opt/casa/collector (or install CASA "
        "where only root can write)"]
