"""bus.paths: the one definition of "the path an event is about" (docs/bus.md §5.9)."""

from __future__ import annotations

import pytest

from bus.paths import effective_path, is_normal_absolute, normalise


@pytest.mark.parametrize("path, base, want", [
    ("/tmp/d/p.sh", "/", "/tmp/d/p.sh"),
    ("/tmp//d/./p.sh", "/", "/tmp/d/p.sh"),
    ("//tmp/d/../d/p.sh", "/", "/tmp/d/p.sh"),
    ("./.x86", "/tmp/d", "/tmp/d/.x86"),
    ("../d/p.sh", "/tmp/d", "/tmp/d/p.sh"),
    ("../../../../x", "/tmp", "/x"),
    ("a/b/", "/w", "/w/a/b"),
    ("/tmp/d/", "/", "/tmp/d"),
    ("/", "/", "/"),
    ("p\udcff\n.sh", "/tmp/\udcfe", "/tmp/\udcfe/p\udcff\n.sh"),
])
def test_normalise_folds_dots_and_slashes(path: str, base: str, want: str) -> None:
    assert normalise(path, base) == want


def test_normal_absolute_paths_are_recognised_cheaply() -> None:
    assert is_normal_absolute("/usr/bin/env")
    assert not is_normal_absolute("usr/bin")
    assert not is_normal_absolute("/usr//bin")
    assert not is_normal_absolute("/usr/bin/..")
    assert not is_normal_absolute("/usr/bin/")


def test_effective_path_prefers_the_kernel_resolution() -> None:
    ev = {"kind": "open", "path": "./p.sh", "abspath": "/tmp/d/p.sh"}
    assert effective_path(ev) == ("/tmp/d/p.sh", True)


def test_an_absent_abspath_means_the_path_is_already_absolute() -> None:
    assert effective_path({"path": "/tmp/x"}) == ("/tmp/x", True)
    assert effective_path({"path": "/tmp//x"}) == ("/tmp/x", True)   # an older recording


def test_an_empty_abspath_means_unresolved_and_keeps_the_raw_text() -> None:
    assert effective_path({"path": "./p.sh", "abspath": ""}) == ("./p.sh", False)
    assert effective_path({"path": "p.sh"}) == ("p.sh", False)        # relative, never resolved


def test_wire_bytes_and_the_second_path_of_a_rename() -> None:
    ev = {"path": b"a\xff", "abspath": b"/w/a\xff", "new_path": "b", "new_abspath": "/w/b"}
    assert effective_path(ev) == ("/w/a\udcff", True)
    assert effective_path(ev, "new_path") == ("/w/b", True)
