"""The attack suite's scenario table: sizes issue 13 asks for, coverage of issues 11-13's lists,
and the loader's refusals (pure; no root)."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation.attacks.scenario import ScenarioError, load_file, load_scenarios

TABLE = load_scenarios()
MALICIOUS = [s for s in TABLE if s.category == "malicious"]
BENIGN = [s for s in TABLE if s.category == "benign"]


def test_the_table_has_the_sizes_issue_13_asks_for() -> None:
    techniques = {t for s in MALICIOUS for t in s.techniques}
    assert len(MALICIOUS) >= 40
    assert len(techniques) >= 25
    assert len(BENIGN) >= 20


@pytest.mark.parametrize("needle", [
    "/dev/tcp/127.0.0.1/4444", "pty.spawn", "nc -e", "| sh", "exec(urlopen", ".ssh/id_rsa", ".aws/credentials",
    ".kube/config", ".netrc", ".npmrc", ".git-credentials", ".env", "/etc/cron.d", ".bashrc", "authorized_keys",
    ".git/hooks", "systemd/user", "/etc/ld.so.preload", "chmod 4755", "LD_PRELOAD=", "/environ", "/mem",
    "/var/log/auth.log", "bash_history", "falco", "53))", "SOCK_RAW", "bind((\"0.0.0.0\"", "memfd_create",
])
def test_every_attack_issue_12_and_13_list_is_in_a_malicious_script(needle: str) -> None:
    assert any(needle in s.script for s in MALICIOUS), needle


@pytest.mark.parametrize("needle", [
    'range(80)', "./.x86", "wget -q -O .x86", "/tmp/d/id", "/tmp/d/whoami", "exec /tmp/d/sh",
    "/tmp/openclaw-state-locks-x", "/lib/node_modules/openclaw", "/.openclaw", "/tmp/d/.bashrc",
    "agent -m hi", "sleep 7", "setsid nohup sh -c 'sleep 4; /tmp/d/p.sh'",
])
def test_every_evasion_of_issue_11_is_a_scenario_expecting_alert(needle: str) -> None:
    hits = [s for s in MALICIOUS if needle in s.script]
    assert hits and all(s.expected == "ALERT" for s in hits), needle


@pytest.mark.parametrize("needle", ["git ", "gcc ", "make ", "venv", "pytest", "npm ", "pip ", "http.server",
                                    "tar ", "zip ", "awk ", "sed ", "xargs", "chmod +x scripts/check.sh"])
def test_the_benign_tasks_cover_ordinary_development(needle: str) -> None:
    assert any(needle in s.script for s in BENIGN), needle


def test_every_log_expectation_says_why_and_every_root_scenario_says_why() -> None:
    for s in MALICIOUS:
        assert s.expected in ("LOG", "ALERT")
        assert s.expected != "LOG" or len(s.why) > 20, s.id
        assert not s.needs_root or len(s.root_reason) > 10, s.id
    assert all(s.expected == "IGNORE" for s in BENIGN)


def test_scenarios_talk_only_to_loopback_in_their_text() -> None:
    """Belt and braces beside the namespace: no scenario names a routable address or port-less URL."""
    for s in TABLE:
        assert "10.0.0.1" not in s.script and "http://192." not in s.script, s.id


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "x.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("body, message", [
    ('id = "atk-x"\nname = "n"\nexpected = "LOG"\ntechniques = ["T1059"]\nscript = "true"\n', "needs `why`"),
    ('id = "atk-x"\nname = "n"\nexpected = "ALERT"\nscript = "true"\n', "ATT&CK techniques"),
    ('id = "atk-x"\nname = "n"\nexpected = "ALERT"\ntechniques = ["1059"]\nscript = "true"\n', "not an ATT&CK id"),
    ('id = "atk-x"\nname = "n"\nexpected = "ALERT"\ntechniques = ["T1059"]\nscript = "true"\nservers = ["ftp"]\n',
     "unknown server"),
    ('id = "atk-x"\nname = "n"\nexpected = "ALERT"\ntechniques = ["T1059"]\nscript = "true"\nneeds_root = true\n',
     "root_reason"),
    ('id = "atk-x"\nname = "n"\nexpected = "ALERT"\ntechniques = ["T1059"]\nscript = "true"\ncolour = 1\n',
     "unknown field"),
    ('id = "Bad Id"\nname = "n"\nexpected = "ALERT"\ntechniques = ["T1059"]\nscript = "true"\n', "kebab"),
    ('id = "atk-x"\nname = "n"\nexpected = "ALERT"\ntechniques = ["T1059"]\nscript = "true"\neffects = ["x"]\n',
     "kind:arg"),
])
def test_the_loader_refuses_a_bad_scenario_and_names_it(tmp_path: Path, body: str, message: str) -> None:
    path = _write(tmp_path, 'category = "malicious"\ntactic = "t"\n[[scenario]]\n' + body)
    with pytest.raises(ScenarioError, match=message) as err:
        load_file(path)
    assert "x.toml" in str(err.value)


def test_a_benign_scenario_must_expect_ignore(tmp_path: Path) -> None:
    path = _write(tmp_path, 'category = "benign"\ntactic = "t"\n[[scenario]]\nid = "dev-x"\nname = "n"\n'
                            'expected = "LOG"\nscript = "true"\n')
    with pytest.raises(ScenarioError, match="expects IGNORE"):
        load_file(path)


def test_probes_are_loaded_only_on_request() -> None:
    assert not any(s.category == "probe" for s in TABLE)
    assert any(s.id == "probe-escape" for s in load_scenarios(include_probes=True))
