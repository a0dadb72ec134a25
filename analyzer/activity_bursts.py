"""Two bursts over distinct things, per agent tree: system discovery and bulk file replacement.

* ``history.discovery_burst``: ``discovery_threshold`` **distinct** system-discovery programs
  (``discovery_tool_names``: ``id``, ``uname``, ``ip``, ``ss``, ``ps``, ``env``, ...) started
  within ``burst_window_seconds``. One or two of them is what a developer or an agent checking
  its environment runs; a sweep of users, host, network, processes and environment in seconds is
  the reconnaissance that precedes collection (ATT&CK Discovery). Routine execs count (``id``
  alone is routine for the sessionizer's shortcuts, not for this): the names are of programs
  from anywhere, so a renamed copy counts as what it claims to be.
* ``history.bulk_replace``: ``bulk_replace_threshold`` distinct files each replaced by a derived
  copy within ``burst_window_seconds``: the tree wrote ``X.<ext>`` and then deleted ``X``, a file
  it had not written itself within the horizon (encrypting ransomware: ``openssl enc -in f -out
  f.locked && rm f``; a program rotating its own database or temp files is not this). ``gzip`` of many files
  without ``-k`` has the same shape (docs/rules.md says how to tune).

Both are kept in small bounded maps, not in the checkpoint: after an analyzer restart a burst
starts again (the window is seconds long).
"""

from __future__ import annotations

from collections import OrderedDict

from analyzer.evidence import Ref

__all__ = ["ActivityBursts", "DERIVED_KEPT"]

DERIVED_KEPT = 256            # recently written X.<ext> origins remembered
_MAX_EXT = 16                 # "X.locked", "X.enc", "X.gz": a short last suffix


class ActivityBursts:
    """Distinct discovery programs and replaced files of one tree, within the burst window."""

    __slots__ = ("window_ns", "discovery", "origins", "replaced")

    def __init__(self, window_ns: int) -> None:
        self.window_ns = window_ns
        self.discovery: dict[str, Ref] = {}                    # program name -> its latest exec
        self.origins: OrderedDict[str, int] = OrderedDict()    # X -> when X.<ext> was written
        self.replaced: dict[str, Ref] = {}                     # X -> its unlink

    def discovered(self, name: str, ref: Ref, threshold: int) -> tuple[Ref, Ref] | None:
        """A discovery program ran; the first and last of a completed burst, else None."""
        return self._distinct(self.discovery, name, ref, threshold)

    def written(self, path: str, ts: int) -> None:
        """A write-intent open of ``path``: if it is ``X.<ext>``, X may be replaced next."""
        stem, dot, ext = path.rpartition(".")
        if not dot or not stem or "/" in ext or not 0 < len(ext) <= _MAX_EXT or stem.endswith("/"):
            return
        origins = self.origins
        origins[stem] = ts
        origins.move_to_end(stem)
        if len(origins) > DERIVED_KEPT:
            origins.popitem(last=False)

    def unlinked(self, path: str, ref: Ref, threshold: int) -> tuple[Ref, Ref] | None:
        """A file was deleted: a replacement when ``path.<ext>`` was written just before."""
        when = self.origins.get(path)
        if when is None or ref[0] - when > self.window_ns or ref[0] < when:
            return None
        return self._distinct(self.replaced, path, ref, threshold)

    def _distinct(self, seen: dict[str, Ref], key: str, ref: Ref, threshold: int) -> tuple[Ref, Ref] | None:
        """Remember ``key`` at ``ref``, forget keys older than the window; the burst's first
        and last references once ``threshold`` distinct keys are inside it."""
        seen[key] = ref
        cutoff = ref[0] - self.window_ns
        for old in [k for k, r in seen.items() if r[0] < cutoff]:
            del seen[old]
        if len(seen) < max(threshold, 1):
            return None
        first = min(seen.values(), key=lambda r: r[0])
        return first, ref
