"""driftline's own webhook: each incident state change POSTed as JSON to a URL, with retries and a dead-letter log.

For receivers that are not behind Alertmanager (a chat hook, a ticketing system). The runner hands
it the same state changes it publishes to the alerts topic (:mod:`~driftline.stream.runner.alert_messages`),
before their checkpoint commits; a background thread POSTs each as a JSON object (the fields of
``schemas/alert.avsc``, times as ISO 8601 UTC) so that a slow or failing receiver never holds up
the stream. A delivery that fails (a connection error, a timeout, any status but 2xx) is retried
with exponential backoff (1, 2, 4 … s, ``attempts`` in all); one that still fails is appended to the
dead-letter log — one JSON line with the message, the URL and the last error — and logged. Nothing
is dropped silently. What is still queued when the worker is killed is not delivered: the alerts
topic is the durable record (at least once), this is the convenience.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from driftline.stream.runner.alert_messages import decode_alert_message

__all__ = ["TeePort", "WebhookNotifier", "redacted"]

log = logging.getLogger("driftline.webhook")

_STOP = object()


def redacted(url: str) -> str:
    """``url`` without credentials, query or fragment (a token often rides there): what logs and errors show."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    return urllib.parse.urlunsplit((parts.scheme, host + (f":{parts.port}" if parts.port else ""), parts.path, "", ""))


class TeePort:
    """One alerts port that sends every message to several (the alerts topic and the webhook)."""

    def __init__(self, *ports: Any) -> None:
        self.ports = ports

    def send(self, key: bytes, value: bytes) -> None:
        for port in self.ports:
            port.send(key, value)

    def flush(self) -> None:
        for port in self.ports:
            port.flush()


def _json_ready(record: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in record.items():
        out[name] = value.astimezone(dt.UTC).isoformat() if isinstance(value, dt.datetime) else value
    return out


class WebhookNotifier:
    """POSTs incident state changes to ``url`` in the background (see the module docstring).

    Parameters
    ----------
    url
        The receiver (``http://`` or ``https://``).
    dead_letter_log
        Where deliveries that failed every attempt are appended (JSON lines); created if missing.
    attempts, backoff_seconds, timeout_seconds
        Tries per message, the first wait between two (doubling each time), and each request's timeout.
    """

    def __init__(self, url: str, dead_letter_log: Path, *, attempts: int = 5, backoff_seconds: float = 1.0,
                 timeout_seconds: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must be http:// or https://, got {redacted(url) or 'no URL'}")
        if attempts < 1 or backoff_seconds < 0 or timeout_seconds <= 0:
            raise ValueError("attempts must be >= 1, backoff_seconds >= 0 and timeout_seconds > 0")
        self.url = url
        self.dead_letter_log = Path(dead_letter_log)
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.timeout_seconds = timeout_seconds
        self.delivered = 0
        self.dead_lettered = 0
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="driftline-webhook", daemon=True)
        self._thread.start()

    # -- the runner's alerts port -------------------------------------------------------------------

    def send(self, key: bytes, value: bytes) -> None:
        """Queue one alerts-topic message (its JSON form is POSTed)."""
        self._queue.put(_json_ready(decode_alert_message(value)))

    def flush(self) -> None:
        """Nothing to wait for: deliveries happen in the background (see the module docstring)."""

    # -- lifecycle ----------------------------------------------------------------------------------

    def close(self, timeout: float = 30.0) -> None:
        """Deliver (or dead-letter) what is queued, waiting at most ``timeout`` seconds, then stop."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            self._deliver(item)

    def _deliver(self, message: dict[str, Any]) -> None:
        body = json.dumps(message, separators=(",", ":")).encode()
        error = ""
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(self.backoff_seconds * 2 ** (attempt - 1))
            request = urllib.request.Request(self.url, data=body, method="POST", headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                    if 200 <= response.status < 300:
                        self.delivered += 1
                        return
                    error = f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                error = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        self.dead_lettered += 1
        log.error("webhook %s: alert %s (%s) not delivered after %d attempts (%s); written to %s", redacted(self.url),
                  message.get("alert_id"), message.get("state"), self.attempts, error, self.dead_letter_log)
        self.dead_letter_log.parent.mkdir(parents=True, exist_ok=True)
        with self.dead_letter_log.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"url": redacted(self.url), "error": error, "attempts": self.attempts, "message": message}) + "\n")
