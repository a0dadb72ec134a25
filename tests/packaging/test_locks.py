"""The dependency declarations agree: pyproject.toml, the .in files, the hashed locks and the venv.

pyproject.toml says what CASA needs (ranges), requirements.in / requirements-test.in pin the
versions it is tested with, requirements.txt / requirements-test.txt lock every package with
hashes (`make lock`), and setup.sh installs the locks with --require-hashes. A version bumped in
one place and not the others would ship a venv nobody tested; these checks catch that.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

CHECKOUT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")


def pyproject() -> dict:
    return tomllib.loads((CHECKOUT / "pyproject.toml").read_text())


def declared(group: str) -> dict[str, Requirement]:
    """name -> requirement of ``[project] dependencies`` ("runtime") or an optional group."""
    project = pyproject()["project"]
    lines = project["dependencies"] if group == "runtime" else project["optional-dependencies"][group]
    return {canonicalize_name(r.name): r for r in map(Requirement, lines)}


def pins(name: str) -> dict[str, str]:
    """name -> version of the ``==`` lines of a requirements file (options and comments skipped)."""
    out = {}
    for line in (CHECKOUT / name).read_text().splitlines():
        m = PIN.match(line.strip())
        if m:
            out[canonicalize_name(m.group(1))] = m.group(2)
    return out


def lock_entries(name: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a pip-compile lock with ``--generate-hashes``."""
    text = (CHECKOUT / name).read_text().replace("\\\n", " ")
    out = {}
    for line in text.splitlines():
        m = PIN.match(line.strip())
        if m:
            hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", line)
            out[canonicalize_name(m.group(1))] = (m.group(2), hashes)
    return out


@pytest.mark.parametrize(("group", "inputs"), [("runtime", "requirements.in"),
                                               ("test", "requirements-test.in")])
def test_the_pinned_inputs_are_what_pyproject_declares(group: str, inputs: str) -> None:
    want, pinned = declared(group), pins(inputs)
    assert sorted(pinned) == sorted(want), f"{inputs} and pyproject.toml ({group}) name different packages"
    for name, version in pinned.items():
        assert want[name].specifier.contains(version), f"{inputs}: {name}=={version} is outside {want[name]}"


@pytest.mark.parametrize(("inputs", "lock"), [("requirements.in", "requirements.txt"),
                                              ("requirements-test.in", "requirements-test.txt")])
def test_every_package_of_a_lock_is_pinned_with_a_hash(inputs: str, lock: str) -> None:
    entries = lock_entries(lock)
    assert entries, f"{lock} pins nothing"
    for name, (version, hashes) in entries.items():
        assert hashes, f"{lock}: {name}=={version} has no --hash (setup.sh installs with --require-hashes)"
    for name, version in pins(inputs).items():
        assert name in entries, f"{lock} lacks {name} of {inputs}: run `make lock`"
        assert entries[name][0] == version, f"{lock} has {name}=={entries[name][0]}, {inputs} {version}"


def test_bcc_comes_from_debian_never_from_pypi() -> None:
    """The PyPI "bcc" is an unrelated package; bcc is python3-bpfcc, linked in by setup.sh."""
    for name in ("requirements.in", "requirements-test.in", "requirements.txt", "requirements-test.txt"):
        assert "bcc" not in pins(name), name
    assert "bcc" not in declared("runtime")


def test_the_two_locks_agree_on_shared_packages() -> None:
    runtime, tests = lock_entries("requirements.txt"), lock_entries("requirements-test.txt")
    clashes = {n: (runtime[n][0], tests[n][0]) for n in runtime.keys() & tests.keys()
               if runtime[n][0] != tests[n][0]}
    assert not clashes, clashes


def test_the_running_venv_is_the_lock() -> None:
    """What setup.sh installed (this interpreter's packages) is exactly what the locks say."""
    locked = {**lock_entries("requirements.txt"), **lock_entries("requirements-test.txt")}
    wrong = {}
    for name, (version, _) in locked.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[name] = (version, installed)
    assert not wrong, f"locked vs installed (re-run ./setup.sh): {wrong}"
