"""The noise filters as named predicates, anchored: loader noise for any process (on the
normalised absolute path, reads only), runtime noise for the runtime's own image only, routine
execs only from system directories, the connect filters. One case dropped, one kept, each."""

from __future__ import annotations

import pytest

from sessionizer.gates import (ConnectPolicy, NoiseError, NoiseLists, canonical_ip, connect_drop_reason,
                               connect_noise, routine_exec)
from sessionizer.noise import LOADER, MISSING, UNRESOLVED, path_fact, runtime_anchors

LISTS = NoiseLists()
LIBS = ("/lib/", "/usr/lib/", "/lib64/")
POLICY = ConnectPolicy.build([18000], ["198.51.100.7"])
SYSTEM = frozenset({"/bin", "/usr/bin", "/usr/sbin", "/sbin"})


@pytest.mark.parametrize("path, fact", [
    ("/etc/ld.so.cache", LOADER),
    ("/usr/lib/x86_64-linux-gnu/libc.so.6", LOADER),
    ("/lib64/ld-linux-x86-64.so.2", LOADER),
    ("/usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache", LOADER),
    ("/proc", LOADER),
    ("/proc/self/status", LOADER),
    ("/proc/thread-self/attr/current", LOADER),
    ("/proc/meminfo", LOADER),                                   # a non-pid /proc file
    ("/proc/4242/environ", 4242),                                # a pid: the core decides
    ("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq", LOADER),
    ("/sys/fs/cgroup/memory/process_api/ab/memory.limit_in_bytes", LOADER),
    ("/usr/lib/locale/C.utf8/LC_CTYPE", LOADER),
    ("/etc/hosts", LOADER),
    ("/usr//lib/./locale/../locale/C.utf8/LC_CTYPE", LOADER),    # normalised first
    ("/tmp/../etc/ld.so.cache", LOADER),
    ("", MISSING),
    ("ld.so.cache", UNRESOLVED),                                 # relative: never noise
    ("  /etc/ld.so.cache", UNRESOLVED),                          # not trimmed: a relative name
])
def test_loader_noise_facts(path, fact):
    assert path_fact(path, LISTS, LIBS) == fact


@pytest.mark.parametrize("path", [
    "/etc/shadow", "/tmp/openclaw-eval/helper.sh", "/usr/lib/python3/os.py", "/home/u/.profile.bak",
    "/sys/kernel/security/lsm", "/var/tmp/payload.sh", "/tmp/usr/lib/locale/x",
    "/usr/lib/localepayload", "/ETC/LD.SO.CACHE", "/etc/ld.so.cache ", "/tmp/x.so",
    "/tmp/lib/x.so.1", "/usr/lib/../../tmp/evil.so", "/home/u/.nvm/versions/node/v24/lib/x.js",
    "/usr/lib/node_modules/openclaw/dist/entry.js", "/home/agent/.openclaw/state.json",
    "/tmp/openclaw-state-locks-995/x", "/srv/app/package.json", "/home/alice/.bashrc",
    "/var/tmp/etilqs_e243b1dfcc434820", "/etc/bash.bashrc",
])
def test_paths_that_are_never_loader_noise(path):
    """Runtime state, rc files and manifests are not loader noise: only the runtime's own
    image can have them filtered (runtime noise, below); case and spaces are not folded."""
    assert path_fact(path, LISTS, LIBS) is None


def test_non_utf8_paths_are_judged_as_text():
    assert path_fact(b"/proc/self/\xff", LISTS, LIBS) == LOADER
    assert path_fact(b"/tmp/\xff", LISTS, LIBS) is None


ANCHORS = runtime_anchors(LISTS, 995, "/var/lib/agent", "/opt/oc/node_modules")


@pytest.mark.parametrize("path", [
    "/var/lib/agent/.openclaw/agents/main/sessions/s.jsonl",
    "/var/lib/agent/.cache/openclaw/openclaw-sqlite-readonly-v2-x/y",
    "/var/lib/agent/.nvm/versions/node/v24/lib/x.js",
    "/var/lib/agent/.bashrc", "/var/lib/agent/.profile",
    "/opt/oc/node_modules/openclaw/dist/entry.js", "/opt/oc/node_modules/ws/index.js",
    "/tmp/openclaw-state-locks-995/state-handles.d1f9.lock.sqlite",
    "/var/tmp/etilqs_e243b1dfcc434820", "/srv/app/package.json", "/srv/app/package-lock.json",
])
def test_runtime_noise_is_anchored_to_the_roots_real_directories(path):
    assert ANCHORS.matches(path)


@pytest.mark.parametrize("path", [
    "/tmp/x/.openclaw/p.sh", "/tmp/openclaw-state-locks-x/p.sh", "/tmp/openclaw-state-locks-995x/p",
    "/tmp/x/lib/node_modules/openclaw/p.sh", "/tmp/x/.bashrc", "/home/other/.openclaw/x",
    "/var/lib/agent/.openclaw-evil/x", "/var/lib/agent/.bashrc.d/x", "/opt/oc/node_modules2/x",
    "/var/lib/agent/.nvmx/p", "/srv/app/package.json.sh",
])
def test_runtime_noise_is_not_fooled_by_lookalike_names(path):
    assert not ANCHORS.matches(path)


def test_runtime_anchors_without_a_home_or_uid_cover_less_never_more():
    bare = runtime_anchors(LISTS, None, None, None)
    assert not bare.matches("/var/lib/agent/.openclaw/x")
    assert not bare.matches("/tmp/openclaw-state-locks-995/x")          # no uid: no lock dir
    assert bare.matches("/var/tmp/etilqs_1")
    assert runtime_anchors(LISTS, 0, "/", None).dirs == ("/tmp/openclaw-state-locks-0/",)


@pytest.mark.parametrize("path, argv, routine", [
    ("/usr/bin/uname", ["uname", "-a"], True), ("/usr/bin/uname", ["-a"], True),
    ("/usr/bin/uname", ["uname"], False), ("/usr/bin/uname", ["uname", "-r"], False),
    ("/usr/bin/whoami", ["whoami"], True), ("/usr/bin/whoami", [], True),
    ("/usr/bin/whoami", ["whoami", "--help"], False),
    ("/usr/sbin/ip", ["ip", "neigh", "show"], True), ("/usr/sbin/ip", ["ip", "addr"], False),
    ("/tmp/d/id", ["id"], False), ("/tmp/d/whoami", [], False),         # named like one: no
    ("/usr/bin/x/id", ["id"], False), ("/usr/local/bin/id", ["id"], False),   # not in SYSTEM
])
def test_routine_exec_only_from_a_system_directory(path, argv, routine):
    assert routine_exec(path, argv, LISTS, SYSTEM) is routine


@pytest.mark.parametrize("addr, port, family, reason", [
    ("127.0.0.1", 8080, 2, "loopback_connect"),
    ("127.0.0.53", 53, 2, "loopback_connect"),
    ("::1", 8080, 10, "loopback_connect"),
    ("::ffff:127.0.0.1", 8080, 10, "loopback_connect"),
    ("127.0.0.1", 18000, 2, None),                     # allowed_loopback_ports
    ("0.0.0.0", 80, 2, "unspecified_connect"),
    ("93.184.216.34", 0, 2, "missing_fields"),
    ("", 80, 2, "missing_fields"),
    ("198.51.100.7", 443, 2, "ignored_connect_ip"),
    ("93.184.216.34", 443, 2, None),
    ("2001:db8::1", 443, 10, None),                    # IPv6 reaches the rules (the original lost it)
    ("/run/x.sock", 1, 1, "non_inet_connect"),
])
def test_connect_filters(ev, addr, port, family, reason):
    assert connect_drop_reason(ev.connect(5, 4, addr, port, family=family), POLICY) == reason


def test_connect_noise_without_allowed_ports_drops_every_loopback(ev):
    assert connect_noise(ev.connect(5, 4, "127.0.0.1", 18000), ConnectPolicy()) == "loopback_connect"


def test_noise_lists_are_configurable():
    lists = NoiseLists.from_config({"runtime_home_files": [".zshrc"], "routine_execs": [["hostname"]]})
    anchors = runtime_anchors(lists, 1, "/home/u", None)
    assert anchors.matches("/home/u/.zshrc") and not anchors.matches("/home/u/.profile")
    assert routine_exec("/bin/hostname", ["hostname"], lists, SYSTEM)
    assert not routine_exec("/usr/bin/whoami", ["whoami"], lists, SYSTEM)


def test_retired_substring_keys_become_anchored_runtime_dirs_with_a_warning(caplog):
    lists = NoiseLists.from_config({"loader_contains": ["/.nvm/", "/srv/eval/node/node_modules/"],
                                    "session_file_suffixes": ["/.zshrc"]})
    assert lists.runtime_dirs == ("/tmp/openclaw-state-locks-{uid}", "/srv/eval/node/node_modules")
    assert "retired" in caplog.text and "'/.nvm/'" in caplog.text


def test_runtime_dns_ports_are_configurable():
    assert NoiseLists().runtime_dns_ports == (53,)
    assert NoiseLists.from_config({"runtime_dns_ports": []}).runtime_dns_ports == ()
    assert NoiseLists.from_config({"runtime_dns_ports": [53, 853]}).runtime_dns_ports == (53, 853)


@pytest.mark.parametrize("raw, message", [
    ([], "must be an object"),
    ({"runtime_dns_ports": ["53"]}, "runtime_dns_ports: must be a list of ports (1-65535)"),
    ({"runtime_dns_ports": [0]}, "runtime_dns_ports: must be a list of ports (1-65535)"),
    ({"runtime_dns_ports": [True]}, "runtime_dns_ports: must be a list of ports (1-65535)"),
    ({"bogus": []}, "unknown field(s) ['bogus']"),
    ({"loader_exact": "x"}, "loader_exact: must be a list of non-empty strings"),
    ({"loader_contains": [1]}, "loader_contains: must be a list of non-empty strings"),
    ({"routine_execs": [[]]}, "routine_execs: must be a list of [basename, arg, ...] lists"),
])
def test_bad_noise_config_is_a_clear_error(raw, message):
    with pytest.raises(NoiseError) as err:
        NoiseLists.from_config(raw)
    assert message in str(err.value)


def test_canonical_ip():
    assert canonical_ip("::ffff:10.0.0.1") == "10.0.0.1"
    assert canonical_ip("2001:DB8:0:0::1") == "2001:db8::1"
    assert canonical_ip("not-an-ip") is None
