"""The webhook sink: POST each notifying decision as JSON to a URL (sinks/notify.py says which
decisions and what the JSON holds).

    python -m sinks webhook        # casa.json "notify": {"webhook": {"url": "https://..."}}

One request per decision, ``Content-Type: application/json``, with ``User-Agent: casa-webhook``.
With a secret (the variable named by ``secret_env``, default ``CASA_WEBHOOK_SECRET``, from the
environment or the sinks' ``.env``) the request carries ``X-Casa-Signature: sha256=<hex>``, the
HMAC-SHA256 of the exact body bytes with the secret as key, so the receiver can tell CASA's
requests from anyone else's. The secret is never logged, and neither is the URL's path or query
(a chat webhook's URL often is its token): log lines name ``scheme://host:port`` only.

Delivery (:class:`WebhookSender`): a 2xx answer is delivered. A connection error, a timeout
(``timeout_s`` for the whole request, connect to the end of the answer), 408, 425, 429 and 5xx are retried
after ``backoff_initial_s``, doubling up to ``backoff_max_s``, at most ``retries`` more times and
never past ``deadline_s`` after the decision arrived; other answers (400, 401, 404, a redirect:
never followed) are given up at once, since repeating the same request cannot change them. A
decision given up is counted (``notify_gave_up``). Standard library only (http.client): one POST
with a timeout needs nothing more, and the sink keeps no connection open between decisions.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sinks.notify import DeliveryCounters, NotifySink
from sinks.notify_config import WebhookSettings

__all__ = ["WebhookSender", "http_post", "signature", "build_webhook_sink", "SIGNATURE_HEADER",
           "ERROR_REPORT_INTERVAL_S"]

SIGNATURE_HEADER = "X-Casa-Signature"
MAX_RESPONSE_BYTES = 64 * 1024         # the answer is read (so the connection ends cleanly), not kept
ERROR_REPORT_INTERVAL_S = 10.0
RETRIABLE = frozenset({408, 425, 429})

log = logging.getLogger("casa.sinks")

Post = Callable[[str, bytes, Mapping[str, str], float], int]


def signature(secret: bytes, body: bytes) -> str:
    """The ``X-Casa-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def http_post(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> int:
    """One POST within ``timeout_s`` in all; returns the status. Raises OSError (refused,
    timeout) or HTTPException.

    The socket timeout bounds each operation; a watchdog bounds the whole request, since a
    server that answers a byte at a time would otherwise reset the socket timeout forever."""
    parts = urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname or "", parts.port, timeout=timeout_s)
    expired = threading.Event()
    watchdog = threading.Timer(timeout_s, _abort, (conn, expired))
    watchdog.daemon = True
    watchdog.start()
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("POST", path, body=body, headers=dict(headers))
        resp = conn.getresponse()
        resp.read(MAX_RESPONSE_BYTES)
        if expired.is_set():
            raise TimeoutError(f"no complete answer within {timeout_s:g} s")
        return resp.status
    except (OSError, http.client.HTTPException):
        if expired.is_set():
            raise TimeoutError(f"no complete answer within {timeout_s:g} s") from None
        raise
    finally:
        watchdog.cancel()
        conn.close()


def _abort(conn: http.client.HTTPConnection, expired: threading.Event) -> None:
    """The watchdog: end a request that outlived its timeout (the blocked read returns at once)."""
    expired.set()
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


@dataclass(slots=True)
class WebhookSender:
    """Deliverer (sinks/notify.py): POST with retries, backoff and a deadline. ``post`` and the
    clock are injectable; the tests use the real ``http_post`` against real local servers."""

    settings: WebhookSettings
    secret: bytes | None = None
    counters: DeliveryCounters = field(default_factory=DeliveryCounters)
    post: Post = http_post
    clock: Callable[[], float] = time.monotonic
    _error: str | None = None
    _reported_at: float = -1e9

    def headers(self, body: bytes) -> dict[str, str]:
        out = {"Content-Type": "application/json", "User-Agent": "casa-webhook"}
        if self.secret:
            out[SIGNATURE_HEADER] = signature(self.secret, body)
        return out

    def deliver(self, body: bytes, deadline: float, stop: threading.Event) -> bool:
        s = self.settings
        headers = self.headers(body)
        delay = s.backoff_initial_s
        for attempt in range(s.retries + 1):
            left = deadline - self.clock()
            if stop.is_set() or left <= 0:
                return False
            retry, why = self._attempt(body, headers, min(s.timeout_s, left))
            if why is None:
                self._recovered()
                return True
            self.counters.attempt_failures += 1
            self._report(why, attempt)
            if not retry:
                return False
            wait = min(delay, s.backoff_max_s, deadline - self.clock())
            if attempt == s.retries or wait <= 0 or stop.wait(wait):
                return False
            delay = max(delay * 2, 0.001)
        return False

    def _attempt(self, body: bytes, headers: Mapping[str, str], timeout_s: float) -> tuple[bool, str | None]:
        """(retry?, why it failed or None when delivered)."""
        try:
            status = self.post(self.settings.url, body, headers, timeout_s)
        except (OSError, http.client.HTTPException) as exc:
            return True, f"{type(exc).__name__}: {exc}"
        if 200 <= status < 300:
            return False, None
        return status >= 500 or status in RETRIABLE, f"HTTP {status}"

    def _report(self, why: str, attempt: int) -> None:
        now = self.clock()
        if why != self._error or now - self._reported_at >= ERROR_REPORT_INTERVAL_S:
            log.error("webhook request failed; retrying until the deadline | url=%s attempt=%d error=%s "
                      "failures=%d", self.settings.safe_url, attempt + 1, why, self.counters.attempt_failures)
            self._error, self._reported_at = why, now

    def _recovered(self) -> None:
        if self._error is not None:
            log.warning("webhook reachable again | url=%s", self.settings.safe_url)
            self._error = None

    def close(self) -> None:
        return None


def build_webhook_sink(settings: WebhookSettings, environ: Mapping[str, str] | None = None) -> NotifySink:
    """The running sink for ``settings`` (enabled): the secret read from the environment."""
    env = os.environ if environ is None else environ
    secret = env.get(settings.secret_env, "")
    counters = DeliveryCounters()
    sender = WebhookSender(settings, secret.encode() if secret else None, counters)
    log.info("posting decisions to a webhook | url=%s min_action=%s signed=%s timeout_s=%g retries=%d "
             "deadline_s=%g queue_size=%d", settings.safe_url, settings.min_action,
             "yes" if secret else "no", settings.timeout_s, settings.retries, settings.deadline_s,
             settings.queue_size)
    return NotifySink(name="webhook", min_action=settings.min_action, deliverer=sender,
                      queue_size=settings.queue_size, deadline_s=settings.deadline_s,
                      dcounters=counters).start()
