"""Which argument of a shell or interpreter command line is the script it runs.

``sh /tmp/x.sh``, ``bash -e x.sh``, ``python3 -u /tmp/x.py a b``, ``node app.js``: the first
argument that is not an option (or the option's value). ``sh -c CMD``, ``python3 -c CODE``,
``python3 -m mod``, ``node -e CODE``, ``perl -e CODE``: no script file (None). Options that take a
value (``python3 -W ignore``, ``node -r ./hook.js``, ``bash -o pipefail``) skip that value.
This is a best effort over argv: an interpreter whose options are not listed here is read as
"first non-option argument" (docs/rules.md, written_then_interpreted).
"""

from __future__ import annotations

__all__ = ["script_argument"]

# family -> (short option letters that mean "code follows, no script", options taking a value,
#            long options meaning "code follows")
_SYNTAX: dict[str, tuple[str, frozenset[str], frozenset[str]]] = {
    "shell": ("cs", frozenset({"-o", "-O", "+o", "+O", "--rcfile", "--init-file"}), frozenset()),
    "python": ("cm", frozenset({"-W", "-X", "--check-hash-based-pycs"}), frozenset()),
    "node": ("ep", frozenset({"-r", "--require", "--import", "--loader", "--experimental-loader",
                              "--env-file", "-C", "--conditions"}),
             frozenset({"--eval", "--print", "--input-type"})),
    "perl": ("eE", frozenset({"-I", "-M", "-m", "-x"}), frozenset()),
    "ruby": ("e", frozenset({"-I", "-r", "-C", "-E"}), frozenset()),
    "php": ("rR", frozenset({"-c", "-d", "-z"}), frozenset()),
    "lua": ("e", frozenset({"-l"}), frozenset()),
}


def _syntax(family: str) -> tuple[str, frozenset[str], frozenset[str]]:
    for key in ("python", "node", "perl", "ruby", "php", "lua"):
        if family.startswith(key):
            return _SYNTAX[key]
    return _SYNTAX["shell"]


def script_argument(family: str, argv: tuple[str, ...] | list[str]) -> str | None:
    """The script path ``argv`` runs, or None (inline code, a module, stdin, nothing)."""
    inline, takes_value, long_inline = _syntax(family)
    args = list(argv[1:])
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            return args[i + 1] if i + 1 < len(args) else None
        if a == "-" or not a:
            return None                   # stdin
        if not a.startswith("-") and not (family == "shell" and a.startswith("+")):
            return a
        if a in long_inline or (not a.startswith("--") and any(ch in inline for ch in a[1:])):
            return None
        if a.startswith("--") and "=" in a:
            i += 1
            continue
        i += 2 if a in takes_value else 1
    return None
