"""Helpers more than one test package uses, each once, named by concept.

``users``         the unprivileged ``casa`` user: whether tests can run a stage as it, and
                  temporary directories it may use.
``polling``       waiting for a condition with a deadline and a message that says what was awaited.
``http_servers``  real HTTP endpoints on 127.0.0.1: a recording server, one that never answers.
``casa_cli``      the ``casa`` command run as a user runs it.
``heartbeats``    one listener for stages' heartbeats (the latest counters of each stream).

Helpers of one package stay beside its tests (``tests/sessionizer/synthetic_events.py``,
``tests/analyzer/analyzer_sequences.py``, ``tests/sinks/sink_maps.py``, ...).
"""
