"""The attack suite: malicious and benign agent scenarios run through the real stack in a
loopback-only, scratch-only sandbox, scored against issue 13's targets (evaluation/README.md)."""
