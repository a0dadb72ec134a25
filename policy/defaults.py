"""Built-in heuristic defaults of the original (docs/original.md §8.1), and how config overrides them.

The original maps every ``analysis`` field onto its heuristics with one rule: a value that is
missing, zero or an empty list falls back to the built-in default, so a zero threshold or an empty
pattern list can never be configured. These defaults deliberately differ from the bundled
rules.json (e.g. ``sensitive_history_window_seconds`` is 30 here, 10 in the file), so they are
copied exactly rather than "fixed".

Fields with no code default (the connect filters) keep what the file says, empty included.
``lineage_max_depth`` has no default at all: the file must set it (> 0).
"""

from __future__ import annotations

from typing import Any

__all__ = ["INT_DEFAULTS", "LIST_DEFAULTS", "NO_DEFAULT_LISTS", "PORT_LIST_FIELDS", "REQUIRED_INTS",
           "CHOICE_DEFAULTS", "MAP_DEFAULTS", "ANALYSIS_FIELDS", "DANGEROUS_CAPABILITY_BITS",
           "apply_default"]

# Integer heuristics: field -> default used when the value is missing or 0.
INT_DEFAULTS: dict[str, int] = {
    "recent_event_limit": 64,
    "max_per_process_artifacts": 16,
    "deep_chain_threshold": 5,
    "burst_open_threshold": 8,
    "burst_connect_threshold": 3,
    "burst_exec_threshold": 3,
    "burst_window_seconds": 10,
    "sensitive_history_window_seconds": 30,
    "configured_connect_refresh_seconds": 300,
    # Beyond the original (docs/rules.md): the indexed history's horizon and per-tree caps, and
    # the UDP exfiltration thresholds.
    "history_horizon_seconds": 600,
    "history_index_cap": 4096,
    "udp_exfil_bytes": 4096,
    "udp_exfil_names": 20,
    "udp_exfil_window_seconds": 60,
    # distinct discovery programs, and distinct files replaced by a derived copy, that make a
    # burst within burst_window_seconds (analyzer/activity_bursts.py)
    "discovery_threshold": 5,
    "bulk_replace_threshold": 5,
}

# String heuristics with a fixed set of values: field -> (default, allowed values).
CHOICE_DEFAULTS: dict[str, tuple[str, tuple[str, ...]]] = {
    # "indexed": time-bounded per-tree indices; "original": the original's last-N window
    "history_mode": ("indexed", ("indexed", "original")),
}

# Required integers (no default; must be > 0).
REQUIRED_INTS: tuple[str, ...] = ("lineage_max_depth",)

# String-list heuristics: field -> default used when the list is missing or empty.
LIST_DEFAULTS: dict[str, tuple[str, ...]] = {
    "suspicious_path_patterns": ("/tmp/", "/var/tmp/", "/dev/shm/", "/run/user/", "/proc/self/fd/"),
    "sensitive_path_prefixes": ("/etc/", "/root/", "/home/", "/proc/", "/sys/", "/var/run/secrets/",
                                "/run/secrets/", "/var/lib/kubelet/", "/var/lib/docker/",
                                "/var/lib/containerd/"),
    "sensitive_path_patterns": ("/.ssh/", "/.gnupg/", "/.aws/", "/.azure/", "/.gcloud/", "/.kube/",
                                "/.docker/", "/.config/", "/.npmrc", "/.pypirc", "/.netrc", "/id_rsa",
                                "/id_ed25519", "/authorized_keys", "/known_hosts", "/credentials",
                                "/credentials.json", "/token", "/secret", "/shadow"),
    "shell_names": ("sh", "bash", "zsh", "dash", "ksh", "fish"),
    "network_tool_names": ("curl", "wget", "nc", "netcat", "ncat", "socat", "ssh", "scp", "rsync"),
    "interpreter_names": ("python", "python3", "perl", "ruby", "node", "php", "lua", "bash", "sh",
                          "dash", "zsh"),
    "container_runtime_names": ("docker", "containerd", "ctr", "runc", "crun", "podman", "nerdctl"),
    "dangerous_capability_names": ("CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_PTRACE"),
    # Beyond the original. Root-owned system directories: name shortcuts (routine execs, shell
    # wrappers, legitimate credential readers) apply only to executables inside them.
    "system_dirs": ("/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin",
                    "/usr/libexec", "/usr/lib", "/lib", "/lib64"),
    # Credential stores. "~/" is each process's own home (passwd of its uid); "*" stays inside
    # one path component, "**" crosses components; "!" excludes (public keys are not secrets:
    # `cat ~/.ssh/id_ed25519.pub` to paste a deploy key is ordinary).
    "credential_paths": (
        "~/.ssh/id_*", "!~/.ssh/*.pub", "~/.ssh/*.pem", "~/.ssh/*_key", "~/.aws/credentials", "~/.aws/config",
        "~/.config/gcloud/**", "~/.azure/**", "~/.kube/config", "~/.docker/config.json",
        "~/.netrc", "~/.npmrc", "~/.pypirc", "~/.git-credentials", "~/.config/git/credentials",
        "~/.config/gh/hosts.yml", "~/.vault-token", "~/.terraform.d/credentials.tfrc.json",
        "~/.cargo/credentials", "~/.cargo/credentials.toml", "~/.gem/credentials",
        "~/.gnupg/private-keys-v1.d/**", "~/.password-store/**", "~/.local/share/keyrings/**",
        "~/.mozilla/firefox/*/logins.json", "~/.mozilla/firefox/*/key4.db",
        "~/.mozilla/firefox/*/cookies.sqlite", "~/.config/google-chrome/*/Login Data",
        "~/.config/google-chrome/*/Cookies", "~/.config/chromium/*/Login Data",
        "~/.config/chromium/*/Cookies", "~/.openclaw/credentials/**",
        "~/.openclaw/**/auth-profiles.json", "~/.openclaw/openclaw.json", "**/.env",
        "/etc/shadow", "/etc/gshadow", "/var/run/secrets/**", "/run/secrets/**",
        # shell and REPL histories: typed passwords, tokens on command lines (T1552.003)
        "~/.bash_history", "~/.zsh_history", "~/.local/share/fish/fish_history", "~/.python_history",
        "~/.node_repl_history", "~/.mysql_history", "~/.psql_history", "~/.sqlite_history"),
    # Persistence locations: writing (or renaming onto, or chmod of) one is a foothold. Not
    # ~/.gitconfig: `git config --global` (identity, default branch) is an ordinary developer
    # action, and what it could run (core.pager, aliases) runs only when the user runs git.
    "persistence_paths": (
        "/etc/crontab", "/etc/cron.d/*", "/etc/cron.hourly/*", "/etc/cron.daily/*",
        "/etc/cron.weekly/*", "/etc/cron.monthly/*", "/var/spool/cron/**", "~/.bashrc",
        "~/.bash_profile", "~/.bash_login", "~/.bash_logout", "~/.profile", "~/.zshrc",
        "~/.zprofile", "~/.zshenv", "~/.zlogin", "~/.config/fish/config.fish", "/etc/profile",
        "/etc/profile.d/*", "/etc/bash.bashrc", "/etc/environment", "~/.pam_environment",
        "~/.ssh/authorized_keys", "~/.ssh/authorized_keys2", "~/.ssh/rc",
        # git runs a hook only under its exact name; `git init`/`clone` write inert *.sample files
        *(f"**/.git/hooks/{h}" for h in (
            "applypatch-msg", "pre-applypatch", "post-applypatch", "pre-commit", "pre-merge-commit",
            "prepare-commit-msg", "commit-msg", "post-commit", "pre-rebase", "post-checkout",
            "post-merge", "pre-push", "pre-receive", "update", "proc-receive", "post-receive",
            "post-update", "reference-transaction", "push-to-checkout", "pre-auto-gc",
            "post-rewrite", "sendemail-validate", "fsmonitor-watchman", "post-index-change")),
        "~/.config/systemd/user/**", "~/.local/share/systemd/user/**",
        "/etc/systemd/system/**", "/etc/systemd/user/**", "/lib/systemd/system/**",
        "/usr/lib/systemd/system/**", "/etc/ld.so.preload", "/etc/ld.so.conf", "/etc/ld.so.conf.d/*",
        "~/.config/autostart/*", "/etc/xdg/autostart/*", "/etc/rc.local", "/etc/init.d/*",
        "/etc/sudoers", "/etc/sudoers.d/*", "/etc/passwd", "/etc/shadow", "/etc/group"),
    # Logs and histories: truncating, deleting or replacing one hides what happened. Not
    # ~/.lesshst and ~/.viminfo: less and vim replace them (rename over) on every exit.
    "log_paths": (
        "/var/log/**", "~/.bash_history", "~/.zsh_history", "~/.python_history",
        "~/.node_repl_history", "~/.local/share/fish/fish_history", "~/.mysql_history",
        "~/.psql_history", "/var/run/utmp", "/run/utmp", "/tmp/openclaw/*.log"),
    # System discovery programs (ATT&CK Discovery): who am I, what host, what network, what runs.
    "discovery_tool_names": (
        "id", "whoami", "groups", "users", "who", "w", "last", "lastlog", "uname", "hostname",
        "hostnamectl", "lsb_release", "ip", "ifconfig", "ss", "netstat", "route", "arp", "nmcli",
        "iptables", "nft", "ps", "pstree", "env", "printenv", "lsof", "lscpu", "lsblk", "lsmod",
        "lspci", "lsusb", "dmidecode", "df", "mount", "getent", "crontab"),
    # Security tools an attacker looks for before acting (exec argv tokens, path components).
    "security_tool_names": (
        "falco", "auditd", "auditctl", "ausearch", "osqueryd", "osqueryi", "tetragon", "tracee",
        "wazuh-agentd", "ossec", "sysdig", "aide", "tripwire", "clamd", "freshclam", "aa-status",
        "apparmor_status", "getenforce", "sestatus", "falcon-sensor", "falconctl", "sentinelctl",
        "cbagentd", "elastic-agent", "auditbeat", "suricata", "snort", "zeek", "casa-collector"),
}

# Maps of string lists without a code default beyond this one: pattern -> legitimate readers
# (exe basenames), honoured only for executables in ``system_dirs``.
MAP_DEFAULTS: dict[str, dict[str, tuple[str, ...]]] = {
    "credential_consumers": {
        "~/.ssh/*": ("ssh", "scp", "sftp", "ssh-add", "ssh-keygen", "ssh-agent", "git", "rsync"),
        "~/.aws/*": ("aws",),
        "~/.kube/config": ("kubectl", "helm"),
        "~/.docker/config.json": ("docker", "podman"),
        "~/.netrc": ("curl", "git", "ftp", "wget", "git-remote-http", "git-remote-https"),
        "~/.npmrc": ("npm", "node"),
        "~/.pypirc": ("twine",),
        "~/.git-credentials": ("git", "git-credential-store"),
        "~/.config/gh/hosts.yml": ("gh",),
        # a history's own program reads it back (an interactive shell, a REPL)
        "~/.bash_history": ("bash",), "~/.zsh_history": ("zsh",),
        "~/.local/share/fish/fish_history": ("fish",),
        "~/.python_history": ("python3", "python", "python3.11", "python3.12", "python3.13"),
        "~/.node_repl_history": ("node",), "~/.mysql_history": ("mysql", "mariadb"),
        "~/.psql_history": ("psql",), "~/.sqlite_history": ("sqlite3",),
    },
}

# String lists without a code default: empty stays empty.
NO_DEFAULT_LISTS: tuple[str, ...] = ("llm_provider_urls", "channel_urls", "known_cidrs",
                                     "ignored_connect_ips")

# Integer lists (uint16 ports), no default.
PORT_LIST_FIELDS: tuple[str, ...] = ("allowed_loopback_ports",)

ANALYSIS_FIELDS: tuple[str, ...] = (REQUIRED_INTS + tuple(INT_DEFAULTS) + tuple(LIST_DEFAULTS)
                                    + NO_DEFAULT_LISTS + PORT_LIST_FIELDS + tuple(CHOICE_DEFAULTS)
                                    + tuple(MAP_DEFAULTS))

# Linux capability numbers (include/uapi/linux/capability.h), for dangerous_capability_names.
DANGEROUS_CAPABILITY_BITS: dict[str, int] = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
    "CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
    "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}


def apply_default(field: str, value: Any) -> Any:
    """Return the effective value of ``field``: the code default when ``value`` is missing/0/empty."""
    if field in INT_DEFAULTS:
        return value if value else INT_DEFAULTS[field]
    if field in LIST_DEFAULTS:
        return tuple(value) if value else LIST_DEFAULTS[field]
    if field in CHOICE_DEFAULTS:
        return value if value else CHOICE_DEFAULTS[field][0]
    if field in MAP_DEFAULTS:
        chosen = value if value else MAP_DEFAULTS[field]      # kept hashable: (key, names) pairs
        return tuple((k, tuple(v)) for k, v in chosen.items())
    return tuple(value) if isinstance(value, (list, tuple)) else value
