"""The hygiene self-check's logic on hand-made collector events (pure; the live proof is
test_sandbox.py). Every shortcut is a hiding place: prefixes are compared by component,
relative and symlinked writes cannot pass as scratch, any non-loopback address fails."""

from __future__ import annotations

import pytest

from evaluation.attacks.selfcheck import check, is_loopback, within

BACKED = ("/tmp", "/var/tmp", "/dev/shm", "/etc", "/var/spool", "/var/log", "/home/casa-attack",
          "/tmp/casa-attacks-x/S")


def ev(kind: str, **fields: object) -> dict[str, object]:
    return {"kind": kind, "tgid": 7, "comm": "t", "ret": 0, **fields}


@pytest.mark.parametrize("addr, ok", [("127.0.0.1", True), ("127.9.9.9", True), ("::1", True),
                                      ("::ffff:127.0.0.1", True), ("10.0.0.1", False), ("0.0.0.0", False),
                                      ("::", False), ("::ffff:10.0.0.1", False), ("fe80::1%lo", False),
                                      ("128.0.0.1", False), ("not an address", False)])
def test_loopback_is_127_slash_8_and_the_ipv6_loopback_only(addr: str, ok: bool) -> None:
    assert is_loopback(addr) is ok


def test_prefixes_match_whole_components_not_substrings() -> None:
    assert within("/tmp/x", BACKED) and within("/tmp", BACKED)
    assert not within("/tmpx/evil", BACKED)
    assert not within("/etcetera", BACKED)
    assert not within("/home/casa-attacker/.bashrc", BACKED)


def test_a_connect_or_send_anywhere_but_loopback_fails_even_when_it_failed() -> None:
    h = check([ev("connect", addr="127.0.0.1", port=8080),
               ev("connect", addr="10.0.0.1", port=80, ret=-101),
               ev("send", addr="8.8.8.8", port=53, ret=-101)], BACKED)
    assert not h.ok and h.network == 3
    assert [v.what for v in h.violations] == ["10.0.0.1:80", "8.8.8.8:53"]


@pytest.mark.parametrize("flags", [0o1, 0o2, 0o100, 0o1000, 0o101 | 0o2000])
def test_every_write_intent_open_outside_scratch_fails(flags: int) -> None:
    h = check([ev("open", path="/usr/local/bin/x", flags=flags, ret=-30)], BACKED)
    assert not h.ok and h.writes == 1


def test_reads_are_not_checked_and_writes_inside_scratch_or_to_devices_pass() -> None:
    h = check([ev("open", path="/usr/lib/x.so", flags=0o2000000),
               ev("open", path="/etc/ld.so.preload", flags=0o1101),
               ev("open", path="/home/casa-attack/.bashrc", flags=0o2101),
               ev("open", path="/dev/null", flags=0o1101), ev("open", path="/dev/pts/3", flags=0o2),
               ev("open", path="/tmp/../tmp/x", flags=0o101)], BACKED)
    assert h.ok, h.violations
    assert h.writes == 5


def test_a_path_that_normalises_out_of_scratch_fails() -> None:
    h = check([ev("open", path="/tmp/../usr/local/x", flags=0o101)], BACKED)
    assert [v.what for v in h.violations] == ["/usr/local/x"]


def test_the_kernels_abspath_wins_over_the_raw_text() -> None:
    ok = check([ev("open", path="x.sh", abspath="/tmp/d/x.sh", flags=0o101)], BACKED)
    bad = check([ev("open", path="x.sh", abspath="/usr/local/x.sh", flags=0o101)], BACKED)
    assert ok.ok and ok.unresolved == 0
    assert [v.what for v in bad.violations] == ["/usr/local/x.sh"]


def test_an_unresolved_relative_write_is_counted_and_fails_only_when_refused_read_only() -> None:
    h = check([ev("open", path="a.o", flags=0o101), ev("open", path="b.o", flags=0o101, abspath=""),
               ev("open", path="../../usr/x", flags=0o101, ret=-30)], BACKED)
    assert h.unresolved == 2
    assert [v.what for v in h.violations] == ["../../usr/x"]


def test_a_write_refused_as_read_only_fails_even_if_its_text_says_tmp() -> None:
    """A symlink /tmp/link -> /usr/local/x: the text is in scratch, the kernel said EROFS."""
    h = check([ev("open", path="/tmp/link", flags=0o101, ret=-30)], BACKED)
    assert not h.ok and "read-only" in h.violations[0].why


def test_rename_chmod_unlink_truncate_are_checked_on_every_path() -> None:
    h = check([ev("rename", path="/tmp/a", new_path="/usr/bin/a"), ev("chmod", path="/usr/bin/sudo", mode=0o4755),
               ev("unlink", path="/var/log/syslog"), ev("truncate", path="/boot/x", length=0),
               ev("rename", path="/tmp/a", new_path="/tmp/b")], BACKED)
    assert sorted(v.what for v in h.violations) == ["/boot/x", "/usr/bin/a", "/usr/bin/sudo"]
    assert h.writes == 5
