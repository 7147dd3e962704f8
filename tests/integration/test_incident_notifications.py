"""An incident end to end: a drift episode that starts and ends gives one firing and one resolved notification.

The worker monitors the feature set ``credit_features`` (its own model name, so nothing else on the
local Prometheus shares its Alertmanager group) and serves its metrics on ``DRIFTLINE_METRICS_PORT``,
which the local Prometheus scrapes every second; the ``DriftlineAlertActive`` rule sends the open
incidents to the local Alertmanager, which notifies the webhook of deploy/alertmanager/alertmanager.yml
(``http://127.0.0.1:5001/driftline-alerts``) — a receiver this test runs. The rows follow the
training data for five minutes, then the serving pipeline computes income 60 % too high for five
minutes (several detectors open incidents on ``annual_income``); only once the firing page has
arrived does the stream go on, back to normal for twenty minutes of event time — more than the
``--alert-quiet 5m`` — and the incidents resolve: one resolved notification, their rows in Postgres
say when, the alerts topic has each incident's firing and resolved message, and driftline's own
webhook (``DRIFTLINE_WEBHOOK_URL``, a token in its query) posted both as JSON.
"""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from test_feature_sets import FEATURE_SET, _save_training_profile
from worker_harness import Worker, eventually, isolated_database, produce, read_topic, unique

from driftline.schemas.codec import encode_single_object
from driftline.schemas.contract_catalog import Catalog
from driftline.sinks.database import create_database_engine
from driftline.stream.demo.generator import SyntheticStream
from driftline.stream.runner.alert_messages import decode_alert_message

WEBHOOK = ("127.0.0.1", 5001)  # deploy/alertmanager/alertmanager.yml
NORMAL, SHIFTED, AFTER = 6_000, 6_000, 24_000  # 20 rows/s: 5, 5 and 20 minutes
TOKEN = "tok-" + unique("")  # in driftline's webhook URL: must appear in no log line


def _rows(start: int, n: int, *, shifted: bool) -> list[bytes]:
    catalog = Catalog.load()
    features = catalog.contract(FEATURE_SET)
    stream = SyntheticStream(catalog.contract("credit_risk"), seed=41, events_per_second=20)
    names = [f.name for f in features.fields]
    payloads = []
    columns = stream.columns(n, offset=start)
    for record in stream.records(columns, stream.event_times(n, offset=start), offset=start):
        row = {name: record[name] for name in names} | {"model_name": FEATURE_SET}
        if shifted:
            row["annual_income"] = float(row["annual_income"]) * 1.6
        payloads.append(encode_single_object(row, features.schema_json))
    return payloads


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).received.append({**json.loads(body), "_path": self.path})
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def _ours(received: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Alertmanager's notifications of this test's group."""
    return [n for n in received if n["_path"] == "/driftline-alerts" and n.get("groupLabels", {}).get("model") == FEATURE_SET]


def _webhook(received: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What driftline's own webhook posted (the same receiver, another path)."""
    return [n for n in received if n["_path"].startswith("/driftline-webhook")]


def test_a_drift_episode_pages_once_and_resolves_once(kafka_bootstrap: str, database_url: str, prometheus_url: str,
                                                       alertmanager_url: str, tmp_path: Path) -> None:
    port = os.environ.get("DRIFTLINE_METRICS_PORT", "19464")
    _Receiver.received = []
    try:
        server = HTTPServer(WEBHOOK, _Receiver)
    except OSError as error:
        pytest.fail(f"cannot listen on {WEBHOOK} for Alertmanager's webhook: {error}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    prefix = unique("incident") + "."
    topic = prefix + "features." + FEATURE_SET
    try:
        with isolated_database(database_url) as url:
            _save_training_profile(url)
            produce(kafka_bootstrap, topic, _rows(0, NORMAL, shifted=False) + _rows(NORMAL, SHIFTED, shifted=True))
            os.environ["DRIFTLINE_WEBHOOK_URL"] = f"http://{WEBHOOK[0]}:{WEBHOOK[1]}/driftline-webhook?token={TOKEN}"
            worker = Worker(bootstrap=kafka_bootstrap, database_url=url, prefix=prefix, deadletter=prefix + "dlq", group="incident",
                            log=tmp_path / "worker.log", models=(),
                            extra=("--feature-set", FEATURE_SET, "--feature-topic-prefix", prefix + "features.",
                                   "--metrics-port", port, "--alert-quiet", "5m", "--alerts-topic", prefix + "alerts",
                                   "--webhook-dead-letter", str(tmp_path / "webhook-dead.jsonl")))
            del os.environ["DRIFTLINE_WEBHOOK_URL"]  # (the worker has it; nothing else should)
            try:
                firing = eventually(lambda: next((n for n in _ours(_Receiver.received) if n["status"] == "firing"), None), 180,
                                    "the firing notification at the webhook")
                paged = {(a["labels"]["kind"], a["labels"].get("feature")) for a in firing["alerts"]}
                assert all(a["labels"]["alertname"] == "DriftlineAlertActive" for a in firing["alerts"])
                assert ("distribution_drift", "annual_income") in paged, paged  # one page listing the features' incidents
                assert all(feature == "annual_income" for _, feature in paged if feature), paged

                produce(kafka_bootstrap, topic, _rows(NORMAL + SHIFTED, AFTER, shifted=False))
                resolved = eventually(lambda: next((n for n in _ours(_Receiver.received) if n["status"] == "resolved"), None), 240,
                                      "the resolved notification at the webhook")
                assert {(a["labels"]["kind"], a["labels"].get("feature")) for a in resolved["alerts"]} == paged
                assert all(a["status"] == "resolved" for a in resolved["alerts"])
                time.sleep(5)
                statuses = [n["status"] for n in _ours(_Receiver.received)]
                assert statuses == ["firing", "resolved"], statuses
            finally:
                assert worker.stop() == 0, worker.log_tail()

            engine = create_database_engine(url)
            try:
                with engine.connect() as connection:
                    rows = [dict(r) for r in connection.exec_driver_sql(
                        "SELECT kind, feature, state, event_time, resolved_at, last_signal_at, signals FROM alert_log").mappings()]
            finally:
                engine.dispose()
            assert rows and all(row["state"] == "resolved" for row in rows), rows
            # driftline's own webhook got each state change too, as JSON; its token is in no log line.
            posted = {(m["kind"], m["feature"], m["state"]) for m in _webhook(_Receiver.received)}
            assert posted == {(kind, feature, state) for kind, feature in paged for state in ("firing", "resolved")}
            assert TOKEN not in (tmp_path / "worker.log").read_text() and not (tmp_path / "webhook-dead.jsonl").exists()
            # The alerts topic has each incident's two state changes (at least once: a repeat would be the same).
            published = {(m["alert_id"], m["state"]): m for m in (decode_alert_message(letter.value)
                                                                    for letter in read_topic(kafka_bootstrap, prefix + "alerts"))}
            assert {(m["kind"], m["feature"], m["state"]) for m in published.values()} == {
                (kind, feature, state) for kind, feature in paged for state in ("firing", "resolved")}
            for (_, state), message in published.items():
                assert message["model_name"] == FEATURE_SET and (state == "firing") == (message["resolved_at"] is None), message
            assert {(row["kind"], row["feature"]) for row in rows} == paged
            for row in rows:
                assert row["last_signal_at"] < row["resolved_at"] and row["signals"] >= 1
                assert (row["resolved_at"] - row["last_signal_at"]).total_seconds() == 300
    finally:
        server.shutdown()
        server.server_close()
