"""The analyzer stage: per-session context flags, weighted CEL rules and decisions (docs/analyzer.md).

``python -m analyzer`` runs it; :class:`analyzer.core.Analyzer` is the pure core.
"""
