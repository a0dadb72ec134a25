"""Every noise filter of §6.4b as a named predicate: one case that is dropped, one that is kept."""

from __future__ import annotations

import pytest

from sessionizer.gates import (ConnectPolicy, NoiseError, NoiseLists, canonical_ip, connect_noise,
                               ingest_drop_reason, routine_exec)

LISTS = NoiseLists()
POLICY = ConnectPolicy.build([18000], ["198.51.100.7"])


@pytest.mark.parametrize("path, reason", [
    ("/etc/ld.so.cache", "loader_noise"),
    ("/usr/lib/x86_64-linux-gnu/libc.so.6", "loader_noise"),
    ("/lib64/ld-linux-x86-64.so.2", "loader_noise"),
    ("/proc", "loader_noise"),
    ("/proc/self/status", "loader_noise"),
    ("/home/u/.nvm/versions/node/v24/lib/x.js", "loader_noise"),
    ("  /ETC/LD.SO.CACHE ", "loader_noise"),                      # trimmed and lower-cased
    ("/home/agent/.openclaw/state.json", "session_file_noise"),
    ("/srv/app/package.json", "session_file_noise"),
    ("/srv/app/package-lock.json", "session_file_noise"),
    ("/etc/hosts", "session_file_noise"),
    ("/home/alice/.bashrc", "session_file_noise"),
    ("/home/anyone/.profile", "session_file_noise"),               # not just /home/ubuntu
    ("/root/.profile", "session_file_noise"),
    ("/usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache", "session_file_noise"),
    ("/etc/bash.bashrc", "session_file_noise"),
    ("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq", "loader_noise"),
    ("/sys/fs/cgroup/memory/process_api/ab/memory.limit_in_bytes", "loader_noise"),
    ("/var/tmp/etilqs_e243b1dfcc434820", "session_file_noise"),
    ("/tmp/openclaw-state-locks-995/state-handles.d1f9.lock.sqlite", "session_file_noise"),
    ("/var/lib/agent/.cache/openclaw/openclaw-sqlite-readonly-v2-x/y", "session_file_noise"),
    ("/usr/lib/locale/C.utf8/LC_CTYPE", "loader_noise"),          # ~20 per process with a UTF-8 LANG
    ("/usr/lib/locale/locale-archive", "loader_noise"),
    ("/usr/lib/node_modules/openclaw/dist/entry.js", "loader_noise"),   # global npm install
    ("/usr/local/lib/node_modules/openclaw/openclaw.mjs", "loader_noise"),
    ("/home/u/.npm-global/lib/node_modules/openclaw/package.json", "loader_noise"),
    ("", "missing_fields"),
])
def test_open_noise_is_dropped(ev, path, reason):
    assert ingest_drop_reason(ev.open(5, 4, path), LISTS, POLICY) == reason


@pytest.mark.parametrize("path", [
    "/etc/shadow", "/tmp/openclaw-eval/helper.sh", "/usr/lib/python3/os.py", "/home/u/.profile.bak",
    "/home/u/notes/package.json.txt", "/root/.ssh/id_rsa", "/etc/hostsfile",
    "/sys/kernel/security/lsm", "/var/tmp/payload.sh", "/tmp/openclaw-eval/helper.sh",
    "/usr/lib/node_modules/openclaw-evil/index.js", "/usr/local/lib/node_modules/other/index.js",
    "/tmp/usr/lib/locale/x", "/usr/lib/localepayload",
])
def test_meaningful_opens_are_kept(ev, path):
    assert ingest_drop_reason(ev.open(5, 4, path), LISTS, POLICY) is None


@pytest.mark.parametrize("argv, dropped", [
    (["uname", "-a"], True), (["-a"], True), (["uname"], False), (["uname", "-r"], False),
    (["whoami"], True), ([], True), (["whoami", "--help"], False),
    (["ip", "neigh", "show"], True), (["ip", "addr"], False),
])
def test_routine_exec(ev, argv, dropped):
    name = {"-a": "uname"}.get(argv[0], argv[0]) if argv else "whoami"
    event = ev.exec(5, 4, f"/usr/bin/{name}", argv)
    assert routine_exec(event, LISTS) is dropped
    assert (ingest_drop_reason(event, LISTS, POLICY) == "routine_exec") is dropped


def test_exec_not_found_is_dropped_but_other_failures_kept(ev):
    assert ingest_drop_reason(ev.exec(5, 4, "/usr/local/sbin/curl", ret=-2), LISTS, POLICY) == "exec_not_found"
    assert ingest_drop_reason(ev.exec(5, 4, "/tmp/x", ret=-13), LISTS, POLICY) is None


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
    assert ingest_drop_reason(ev.connect(5, 4, addr, port, family=family), LISTS, POLICY) == reason


def test_connect_noise_without_allowed_ports_drops_every_loopback(ev):
    assert connect_noise(ev.connect(5, 4, "127.0.0.1", 18000), ConnectPolicy()) == "loopback_connect"


def test_exit_events_are_never_noise(ev):
    assert ingest_drop_reason(ev.exit(5, 4), LISTS, POLICY) is None


def test_noise_lists_are_configurable(ev):
    lists = NoiseLists.from_config({"session_file_suffixes": ["/.zshrc"],
                                    "routine_execs": [["hostname"]]})
    assert ingest_drop_reason(ev.open(5, 4, "/home/u/.zshrc"), lists, POLICY) == "session_file_noise"
    assert ingest_drop_reason(ev.open(5, 4, "/home/u/.profile"), lists, POLICY) is None
    assert ingest_drop_reason(ev.exec(5, 4, "/bin/hostname", ["hostname"]), lists, POLICY) == "routine_exec"
    assert ingest_drop_reason(ev.exec(5, 4, "/usr/bin/whoami", ["whoami"]), lists, POLICY) is None


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
