"""Where a shell or interpreter takes the program it runs from, read off its command line.

``sh /tmp/x.sh``, ``bash -e x.sh``, ``python3 -u /tmp/x.py a b``, ``node app.js``: a script file,
the first argument that is not an option (or an option's value). ``sh -c CMD``,
``python3 -c CODE``, ``node -e CODE``, ``perl -e CODE``: inline code. ``python3 -m mod``: a
module. ``sh``, ``sh -s``, ``bash -i``, ``python3 -``, ``python3`` with no operand: standard
input. Options that take a value (``python3 -W ignore``, ``node -r ./hook.js``,
``bash -o pipefail``) skip that value; ``--version``/``--help`` run nothing.

This is a best effort over argv: an interpreter whose options are not listed here is read as
"first non-option argument" (docs/rules.md, written_then_interpreted).
"""

from __future__ import annotations

__all__ = ["script_argument", "program_source", "SCRIPT", "INLINE", "MODULE", "STDIN", "NOTHING"]

SCRIPT, INLINE, MODULE, STDIN, NOTHING = "script", "inline", "module", "stdin", "nothing"

# family -> (short option letters meaning "code follows", letters meaning "module follows",
#            letters meaning "program on stdin", options taking a value, long options meaning
#            "code follows")
_SYNTAX: dict[str, tuple[str, str, str, frozenset[str], frozenset[str]]] = {
    "shell": ("c", "", "s", frozenset({"-o", "-O", "+o", "+O", "--rcfile", "--init-file"}), frozenset()),
    "python": ("c", "m", "", frozenset({"-W", "-X", "--check-hash-based-pycs"}), frozenset()),
    "node": ("ep", "", "", frozenset({"-r", "--require", "--import", "--loader", "--experimental-loader",
                                      "--env-file", "-C", "--conditions"}),
             frozenset({"--eval", "--print", "--input-type"})),
    "perl": ("eE", "", "", frozenset({"-I", "-M", "-m", "-x"}), frozenset()),
    "ruby": ("e", "", "", frozenset({"-I", "-r", "-C", "-E"}), frozenset()),
    "php": ("rR", "", "", frozenset({"-c", "-d", "-z"}), frozenset()),
    "lua": ("e", "", "", frozenset({"-l"}), frozenset()),
}
_RUNS_NOTHING = frozenset({"--version", "--help"})


def _syntax(family: str) -> tuple[str, str, str, frozenset[str], frozenset[str]]:
    for key in ("python", "node", "perl", "ruby", "php", "lua"):
        if family.startswith(key):
            return _SYNTAX[key]
    return _SYNTAX["shell"]


def program_source(family: str, argv: tuple[str, ...] | list[str]) -> tuple[str, str | None]:
    """``(SCRIPT, path)``, or ``(INLINE | MODULE | STDIN | NOTHING, None)`` for ``argv``."""
    inline, module, stdin, takes_value, long_inline = _syntax(family)
    args = list(argv[1:])
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            return (SCRIPT, args[i + 1]) if i + 1 < len(args) else (STDIN, None)
        if a == "-" or not a:
            return STDIN, None
        if not a.startswith("-") and not (family == "shell" and a.startswith("+")):
            return SCRIPT, a
        if a in long_inline:
            return INLINE, None
        if a in _RUNS_NOTHING:
            return NOTHING, None
        letters = a[1:] if not a.startswith("--") else ""
        if any(ch in inline for ch in letters):
            return INLINE, None
        if any(ch in module for ch in letters):
            return MODULE, None
        if any(ch in stdin for ch in letters):
            return STDIN, None              # `sh -s a b`: the rest are its arguments
        if a.startswith("--") and "=" in a:
            i += 1
            continue
        i += 2 if a in takes_value else 1
    return STDIN, None


def script_argument(family: str, argv: tuple[str, ...] | list[str]) -> str | None:
    """The script path ``argv`` runs, or None (inline code, a module, stdin, nothing)."""
    kind, path = program_source(family, argv)
    return path if kind == SCRIPT else None
