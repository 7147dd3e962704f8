"""The worker's metrics, scraped by the real Prometheus: counts are right and label values stay bounded.

A running ``driftline worker`` serves ``/metrics`` on ``DRIFTLINE_METRICS_PORT``, which the local
Prometheus scrapes every second (deploy/prometheus/prometheus.local.yml.in). After a first stream has
closed some windows, a flood of new category values and event ids — 2,000 distinct values of the
open categorical ``channel`` — must not create a single new time series.
"""

from __future__ import annotations

import os
import time
import urllib.parse
from pathlib import Path
from typing import Any

from worker_harness import MODEL, Worker, eventually, get_json, isolated_database, produce, unique

from driftline.schemas.codec import encode_single_object
from driftline.schemas.contract_catalog import Catalog
from driftline.stream.demo.generator import SyntheticStream


def _query(prometheus_url: str, promql: str) -> list[dict[str, Any]]:
    body = get_json(f"{prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def _scalar(prometheus_url: str, promql: str) -> float | None:
    result = _query(prometheus_url, promql)
    return float(result[0]["value"][1]) if result else None


def _series(prometheus_url: str) -> set[tuple[tuple[str, str], ...]]:
    """Every driftline_* series of the scraped worker, as label sets (the scrape's own labels removed)."""
    result = _query(prometheus_url, '{__name__=~"driftline_.+", job="driftline"}')
    return {tuple(sorted((k, v) for k, v in r["metric"].items() if k not in {"instance", "job"})) for r in result}


def test_scraped_counts_are_exact_and_a_label_flood_adds_no_series(
    kafka_bootstrap: str, database_url: str, prometheus_url: str, tmp_path: Path
) -> None:
    port = os.environ.get("DRIFTLINE_METRICS_PORT", "19464")
    contract = Catalog.load().contract(MODEL)
    stream = SyntheticStream(contract, seed=9, events_per_second=20)
    records = stream.records(stream.columns(12_000), stream.event_times(12_000))
    first, flood = records[:6_000], records[6_000:]
    out_of_range = [dict(r, debt_to_income=7.0) for r in first[:40]]
    for i, record in enumerate(flood[:2_000]):
        record["channel"] = f"partner_{i:05d}"  # `channel` is open (on_violation: count): accepted, counted as unseen
        record["event_id"] = f"flood-{i}"

    prefix = unique("metrics") + "."
    topic = prefix + MODEL

    def encode(records: list[dict[str, Any]]) -> list[bytes]:
        return [encode_single_object(r, contract.schema_json) for r in records]

    with isolated_database(database_url) as url:
        produce(kafka_bootstrap, topic, encode(first) + encode(out_of_range))
        worker = Worker(bootstrap=kafka_bootstrap, database_url=url, prefix=prefix, deadletter=prefix + "dlq", group="metrics",
                        log=tmp_path / "worker.log", extra=["--metrics-port", port])
        try:
            accepted = f'driftline_events_accepted_total{{job="driftline", model="{MODEL}"}}'
            eventually(lambda: True if _scalar(prometheus_url, accepted) == 6_000 else None, 120, "6000 accepted events in Prometheus")
            rejected = _scalar(prometheus_url, f'driftline_events_rejected_total{{job="driftline", model="{MODEL}", reason="out_of_range"}}')
            assert rejected == 40
            # 6,000 events at 20/s are five minutes of event time: windows have closed and scored.
            psi_series = f'count(driftline_drift_score{{job="driftline", model="{MODEL}", statistic="psi"}})'
            assert _scalar(prometheus_url, psi_series) == len(contract.monitored_fields)
            # The series that come with the first checkpoint (commit latency, consumer lag) belong to
            # the steady set: wait for them, then the flood must add none.
            committed = f'driftline_commit_latency_seconds_count{{job="driftline", model="{MODEL}"}}'
            eventually(lambda: True if (_scalar(prometheus_url, committed) or 0) >= 1 else None, 60, "a checkpoint in Prometheus")
            lag = f'driftline_consumer_lag_messages{{job="driftline", model="{MODEL}"}}'
            eventually(lambda: True if _scalar(prometheus_url, lag) is not None else None, 60, "the consumer lag in Prometheus")
            # The producers' side, for the freshness rules: the topic's end offset, all messages written.
            end = f'driftline_topic_end_offset{{job="driftline", model="{MODEL}", stream="predictions", partition="0"}}'
            eventually(lambda: True if _scalar(prometheus_url, end) == 6_040 else None, 60, "the topic's end offset in Prometheus")
            before = _series(prometheus_url)

            produce(kafka_bootstrap, topic, encode(flood))
            eventually(lambda: True if _scalar(prometheus_url, accepted) == 12_000 else None, 120, "the flood in Prometheus")
            eventually(lambda: True if _scalar(prometheus_url, end) == 12_040 else None, 60, "the end offset after the flood")
            time.sleep(2)  # two more scrapes
            after = _series(prometheus_url)
            assert after == before, f"new series: {sorted(after - before)[:5]}"
            assert not any("partner_" in value or "flood-" in value for labels in after for _, value in labels)
            assert worker.running, worker.log_tail()
        finally:
            assert worker.stop() == 0, worker.log_tail()
