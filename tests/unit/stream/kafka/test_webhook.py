"""driftline's webhook: delivered with retries, or dead-lettered with the reason — never dropped silently."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from driftline.stream.kafka.webhook import TeePort, WebhookNotifier, redacted
from driftline.stream.monitor.alerts import make_alert
from driftline.stream.monitor.results import AlertKind, AlertResolution, BatchResult
from driftline.stream.runner import InMemoryPartials
from driftline.stream.runner.alert_messages import alert_messages


class Receiver(BaseHTTPRequestHandler):
    """Answers 500 to the first ``failures`` requests, then 204; records what it accepted."""

    failures = 0
    seen = 0
    accepted: list[dict[str, Any]] = []  # noqa: RUF012 (the handler class is the test's record)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen += 1
        if type(self).seen <= type(self).failures:
            self.send_response(500)
        else:
            type(self).accepted.append(body)
            self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture()
def receiver() -> Iterator[str]:
    Receiver.failures, Receiver.seen, Receiver.accepted = 0, 0, []
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook?token=s3cret"
    server.shutdown()
    server.server_close()


def _messages() -> list[tuple[bytes, bytes]]:
    alert = make_alert(model="churn", model_version="v1", kind=AlertKind.MEAN_SHIFT, feature="age", detector="page_hinkley",
                       severity="warning", window_start_ms=None, event_time_ms=60_000, score=9.5, threshold=5.0, message="age moved")
    return list(alert_messages(BatchResult(alerts=[alert], resolved_alerts=[AlertResolution(alert, 960_000, 60_000, 4)])))


def test_a_failing_receiver_gets_the_message_on_a_retry(receiver: str, tmp_path: Path) -> None:
    Receiver.failures = 2
    notifier = WebhookNotifier(receiver, tmp_path / "dead.jsonl", attempts=4, backoff_seconds=0.01)
    for key, value in _messages():
        notifier.send(key, value)
    notifier.close()
    assert [m["state"] for m in Receiver.accepted] == ["firing", "resolved"] and Receiver.seen == 4
    assert Receiver.accepted[1]["resolved_at"] == "1970-01-01T00:16:00+00:00" and Receiver.accepted[1]["signals"] == 4
    assert notifier.delivered == 2 and notifier.dead_lettered == 0 and not (tmp_path / "dead.jsonl").exists()


def test_what_never_gets_through_is_dead_lettered_with_the_reason_and_no_secret(
    receiver: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    Receiver.failures = 10**6
    notifier = WebhookNotifier(receiver, tmp_path / "logs" / "dead.jsonl", attempts=3, backoff_seconds=0.0)
    tee_other = InMemoryPartials()
    tee = TeePort(tee_other, notifier)  # the alerts topic beside it still gets everything
    for key, value in _messages():
        tee.send(key, value)
    tee.flush()
    notifier.close()
    lines = [json.loads(line) for line in (tmp_path / "logs" / "dead.jsonl").read_text().splitlines()]
    assert [(line["message"]["state"], line["error"], line["attempts"]) for line in lines] == [
        ("firing", "HTTP 500", 3), ("resolved", "HTTP 500", 3)]
    assert Receiver.seen == 6 and len(tee_other.messages) == 2
    assert "s3cret" not in (tmp_path / "logs" / "dead.jsonl").read_text() and "s3cret" not in caplog.text
    assert "not delivered after 3 attempts" in caplog.text


def test_an_unreachable_receiver_and_bad_urls(tmp_path: Path) -> None:
    notifier = WebhookNotifier("http://127.0.0.1:9/nothing-listens", tmp_path / "dead.jsonl", attempts=2, backoff_seconds=0.0,
                               timeout_seconds=2.0)
    notifier.send(*_messages()[0])
    notifier.close()
    [line] = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert "URLError" in line["error"] or "ConnectionRefused" in line["error"]
    with pytest.raises(ValueError, match="http:// or https://"):
        WebhookNotifier("ftp://user:pw@host/x", tmp_path / "dead.jsonl")
    assert redacted("https://user:pw@hooks.example.com:8443/a/b?token=x#f") == "https://hooks.example.com:8443/a/b"
