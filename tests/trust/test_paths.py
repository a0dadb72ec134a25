"""trust/paths.py on made-up trees: which entry of a path another user could change, and who.

The same rules on real trees, as root: tests/stack/test_privilege_boundaries.py."""

from __future__ import annotations

import pytest

from tests.trust.made_up_trees import CASA_GID, DIR, FILE, LINK, ROOT_TREE, tree
from trust.paths import unsafe_writer


def test_a_root_owned_chain_is_held() -> None:
    lstat, readlink = tree(ROOT_TREE)
    assert unsafe_writer("/opt/casa/rules.json", lstat=lstat, readlink=readlink) is None


@pytest.mark.parametrize("entry, change, who", [
    ("/opt/casa", (0, CASA_GID, DIR | 0o775), f"writable by group {CASA_GID}"),
    ("/opt", (0, 0, DIR | 0o757), "writable by every user"),
    ("/opt/casa", (54321, 0, DIR | 0o755), "owned by uid 54321"),
    ("/opt/casa/rules.json", (0, CASA_GID, FILE | 0o664), f"writable by group {CASA_GID}"),
    ("/opt/casa/rules.json", (0, 0, FILE | 0o646), "writable by every user"),
])
def test_any_entry_another_user_can_change_is_named(entry: str, change: tuple, who: str) -> None:
    lstat, readlink = tree({**ROOT_TREE, entry: change})
    found = unsafe_writer("/opt/casa/rules.json", lstat=lstat, readlink=readlink)
    assert found is not None and found.path == entry and found.who.startswith(who), found


def test_sticky_tmp_is_fine_above_a_root_entry_and_not_above_anyone_elses() -> None:
    held = {**ROOT_TREE, "/tmp/casa-x": (0, 0, DIR | 0o755), "/tmp/casa-x/c.json": (0, 0, FILE | 0o644)}
    lstat, readlink = tree(held)
    assert unsafe_writer("/tmp/casa-x/c.json", lstat=lstat, readlink=readlink) is None
    lstat, readlink = tree({**held, "/tmp/casa-x": (54321, 0, DIR | 0o755)})
    found = unsafe_writer("/tmp/casa-x/c.json", lstat=lstat, readlink=readlink)
    assert (found.path, found.who) == ("/tmp/casa-x", "owned by uid 54321")
    lstat, readlink = tree(held)               # a file not there yet, straight in /tmp: anyone may make it
    found = unsafe_writer("/tmp/new.log", lstat=lstat, readlink=readlink, must_exist=False)
    assert found is not None and found.path == "/tmp" and found.who == "writable by every user"


def test_symlinks_are_checked_where_they_live_and_where_they_point() -> None:
    entries = {**ROOT_TREE, "/opt/casa/config": (0, 0, LINK | 0o777), "/srv": (0, 0, DIR | 0o755),
               "/srv/cfg": (0, CASA_GID, DIR | 0o770), "/srv/cfg/casa.json": (0, 0, FILE | 0o644)}
    lstat, readlink = tree(entries, {"/opt/casa/config": "/srv/cfg"})
    found = unsafe_writer("/opt/casa/config/casa.json", lstat=lstat, readlink=readlink)
    assert found is not None and found.path == "/srv/cfg", found
    lstat, readlink = tree({**entries, "/opt/casa/loop": (0, 0, LINK | 0o777)}, {"/opt/casa/loop": "loop"})
    assert "too many symbolic links" in unsafe_writer("/opt/casa/loop", lstat=lstat, readlink=readlink).who
