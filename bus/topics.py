"""Topic names. A topic is the first frame of every bus message; ZeroMQ filters by prefix, so
subscribing to ``"sessionizer."`` receives everything the sessionizer publishes.

Every publishing stage ``S`` also publishes ``S.heartbeat``; subscribers MUST subscribe to the
heartbeat of every stream they read, or they cannot see loss at the tail of a stream.
"""

from __future__ import annotations

COLLECTOR_EVENT = "collector.event"          # batches of raw kernel events (docs/bus.md §Events)
COLLECTOR_CONTROL = "collector.control"      # reload requests, in band with the events

SESSIONIZER_EVENT = "sessionizer.event"      # accepted events, tagged with session_id and lineage
SESSIONIZER_SESSION = "sessionizer.session"  # session lifecycle: opened / flushed / closed / shutdown
SESSIONIZER_CONTROL = "sessionizer.control"  # reload requests forwarded in band

ANALYZER_EVENT = "analyzer.event"            # accepted events, passed through in session order
ANALYZER_DECISION = "analyzer.decision"      # a rule newly matched: score, action, context
ANALYZER_SESSION = "analyzer.session"        # lifecycle plus recent events, score and context
ANALYZER_CONTROL = "analyzer.control"        # reload requests forwarded in band

RESPONDER_RESULT = "responder.result"        # what a response did (or would do, dry run)

HEARTBEAT_SUFFIX = ".heartbeat"


def heartbeat_topic(stage: str) -> str:
    """``collector`` -> ``collector.heartbeat``."""
    return stage + HEARTBEAT_SUFFIX


def is_heartbeat(topic: str) -> bool:
    return topic.endswith(HEARTBEAT_SUFFIX)


def stage_of(topic: str) -> str:
    """``analyzer.decision`` -> ``analyzer``."""
    return topic.split(".", 1)[0]
