"""Who may change what CASA trusts: path ownership checks (trust/paths.py) and the root
collector's StrictModes (trust/strict_modes.py). docs/security.md has the threat model."""
