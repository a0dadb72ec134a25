"""The opt-in responder: stops what an ALERT's response policy names (docs/operating.md)."""
