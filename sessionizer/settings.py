"""Everything the sessionizer reads from configuration, validated as one immutable value.

Sources: rules.json ``analysis`` (through ``policy``: shell names, lineage depth, connect filters,
configured endpoints, system directories, history horizon) and config/casa.json (through
``agents``: the profiles; plus an optional ``sessionizer`` section with the noise lists and the
shell-wrapper switch). ``load_settings`` either returns a complete :class:`Settings` or raises
:class:`SettingsError` with a message that names the file and field, so a reload can validate
first and swap only on success. The system and library directories are checked on disk here
(anchors.py: root-owned, not writable by others; ``stat`` injectable for tests), once per load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents import Profile, ProfileError, load_config, load_profiles
from policy import PolicyError, load_policy
from policy.defaults import INT_DEFAULTS, LIST_DEFAULTS
from sessionizer.anchors import StatFn, trusted_dirs
from sessionizer.gates import ConnectPolicy, NoiseError, NoiseLists
from sessionizer.noise import PathFacts

__all__ = ["Settings", "SettingsError", "load_settings", "settings_from"]

DEFAULT_SHELLS = ("sh", "bash", "zsh", "dash", "ksh", "fish")
DEFAULT_HORIZON_S = float(INT_DEFAULTS["history_horizon_seconds"])


class SettingsError(ValueError):
    """Configuration unusable; the message says which file and why."""


@dataclass(frozen=True, slots=True)
class Settings:
    profiles: tuple[Profile, ...]
    noise: NoiseLists = field(default_factory=NoiseLists)
    connect: ConnectPolicy = field(default_factory=ConnectPolicy)
    shell_names: frozenset[str] = frozenset(DEFAULT_SHELLS)
    lineage_max_depth: int = 6
    llm_provider_urls: tuple[str, ...] = ()
    channel_urls: tuple[str, ...] = ()
    known_cidrs: tuple[str, ...] = ()
    refresh_s: float = 300.0
    shell_wrappers: bool = True       # tag the runtime's own shell wrapper (role wrapper); docs
    rules_version: str = ""
    # root-owned system directories (checked on disk): name shortcuts apply only to files in them
    system_dirs: frozenset[str] = frozenset()
    library_dirs: tuple[str, ...] = ()   # noise.library_dirs that passed the same check
    history_horizon_s: float = DEFAULT_HORIZON_S   # parent sessions, held hidden writes
    # name -> profile, built once: every accepted event looks its root's profile up (a reload
    # builds new Settings, so this can never describe other profiles than ``profiles``)
    by_name: dict[str, Profile] = field(init=False, repr=False, compare=False)
    runtime_profiles: frozenset[str] = field(init=False, repr=False, compare=False)
    # the loader-noise facts of paths, remembered per path; new with every Settings (reload)
    path_facts: PathFacts = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, Profile] = {}
        for p in self.profiles:
            by_name.setdefault(p.name, p)          # the first of a name wins, as a scan would
        object.__setattr__(self, "by_name", by_name)
        object.__setattr__(self, "runtime_profiles",
                           frozenset(p.name for p in by_name.values() if p.kind == "runtime"))
        object.__setattr__(self, "path_facts", PathFacts(self.noise, self.library_dirs))

    @property
    def horizon_ns(self) -> int:
        return int(self.history_horizon_s * 1_000_000_000)

    def profile(self, name: str) -> Profile | None:
        return self.by_name.get(name)


def settings_from(profiles: tuple[Profile, ...], analysis: Any = None, section: Any = None,
                  rules_version: str = "", stat: StatFn = os.stat) -> Settings:
    """Assemble Settings from parsed parts (``analysis`` is a ``policy.Analysis`` or None:
    then the code defaults, the system directories included)."""
    section = section or {}
    if not isinstance(section, dict):
        raise SettingsError("config/casa.json: 'sessionizer' must be an object")
    unknown = set(section) - {"noise", "shell_wrappers"}
    if unknown:
        raise SettingsError(f"config/casa.json: sessionizer: unknown field(s) {sorted(unknown)}")
    try:
        noise = NoiseLists.from_config(section.get("noise"))
    except NoiseError as exc:
        raise SettingsError(f"config/casa.json: {exc}") from None
    wrappers = section.get("shell_wrappers", True)
    if not isinstance(wrappers, bool):
        raise SettingsError("config/casa.json: sessionizer.shell_wrappers must be true or false")
    system = getattr(analysis, "system_dirs", None) or LIST_DEFAULTS["system_dirs"]
    common: dict[str, Any] = dict(
        profiles=profiles, noise=noise, shell_wrappers=wrappers, rules_version=rules_version,
        system_dirs=frozenset(trusted_dirs(system, "analysis.system_dirs", stat)),
        library_dirs=trusted_dirs(noise.library_dirs, "sessionizer.noise.library_dirs", stat))
    if analysis is None:
        return Settings(**common)
    return Settings(
        **common, history_horizon_s=float(analysis.history_horizon_seconds),
        connect=ConnectPolicy.build(analysis.allowed_loopback_ports, analysis.ignored_connect_ips),
        shell_names=frozenset(analysis.shell_names), lineage_max_depth=analysis.lineage_max_depth,
        llm_provider_urls=tuple(analysis.llm_provider_urls), channel_urls=tuple(analysis.channel_urls),
        known_cidrs=tuple(analysis.known_cidrs), refresh_s=float(analysis.configured_connect_refresh_seconds),
    )


def load_settings(rules_path: str | Path, config_path: str | Path | None = None,
                  stat: StatFn = os.stat) -> Settings:
    """Read rules.json and config/casa.json; SettingsError if either is unusable."""
    try:
        data = load_config(config_path)
        profiles = load_profiles(data=data)
    except ProfileError as exc:
        raise SettingsError(f"config/casa.json: {exc}") from None
    try:
        pol = load_policy(rules_path)
    except PolicyError as exc:
        raise SettingsError(f"{rules_path}: {exc}") from None
    return settings_from(profiles, pol.analysis, data.get("sessionizer"), pol.version, stat)
