"""One shell: the same bytes through the demo's and the worker's runner configuration give the same results.

The demo's configuration keeps dead letters in memory and commits results and checkpoints to SQLite,
in the demo's batches; the worker's sends dead letters to a real Kafka topic and commits to a real
PostgreSQL, built by ``WorkerRuntime`` exactly as ``driftline worker`` builds it, fed in other
batches. Both must produce byte-identical serialised results and the same stored rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from worker_harness import MODEL, create_topic, isolated_database, read_topic, unique

from driftline.schemas import Catalog, Codec, avro_types, in_memory_registry
from driftline.schemas.columnar_encoder import BatchEncoder
from driftline.sinks import create_database_engine, metadata, upgrade_database
from driftline.stream.demo.demo import build_demo_runner, reference_profile
from driftline.stream.demo.generator import SyntheticStream
from driftline.stream.demo.sources import synthetic_batches
from driftline.stream.kafka.connection import KafkaConnection
from driftline.stream.kafka.settings import WorkerSettings
from driftline.stream.kafka.worker import WorkerRuntime, prepare_topics
from driftline.stream.monitor.results import BatchResult, to_canonical_json
from driftline.stream.runner import EncodedMessage, PartitionRunner

EVENTS = 60_000
TOPIC = f"predictions.{MODEL}"
# Columns that legitimately differ: write times, and the KLL quantiles (datasketches' compaction is
# randomised, README "Determinism").
VOLATILE = {"updated_at", "created_at", "p01", "p05", "p25", "p50", "p75", "p95", "p99"}
TABLES = ("window_aggregates", "model_windows", "alerts", "schema_changes")


def _messages(catalog: Catalog) -> list[EncodedMessage]:
    """The demo's drifting stream as ``driftline produce --synthetic --drift`` encodes it, with corrupt bytes."""
    contract = catalog.contract(MODEL)
    payloads: list[bytes] = []
    for batch in synthetic_batches(contract, EVENTS, drift=True):
        schema = batch.writer_schema if batch.writer_schema is not None else contract.schema_json
        header = b"\xc3\x01" + avro_types.fingerprint_bytes(avro_types.fingerprint(avro_types.canonical_form(schema)))
        payloads.extend(BatchEncoder(schema, header=header).encode(batch.columns))
    for position in range(1_000, EVENTS, 7_919):
        payloads[position] = b"\xc3\x01 not avro"
    return [EncodedMessage(offset, payload, 0) for offset, payload in enumerate(payloads)]


def _feed(runner: PartitionRunner, messages: list[EncodedMessage], sizes: list[int], checkpoint_every: int) -> None:
    start, batch = 0, 0
    while start < len(messages):
        size = sizes[batch % len(sizes)]
        runner.process(messages[start : start + size])
        start, batch = start + size, batch + 1
        if batch % checkpoint_every == 0:
            runner.checkpoint()
    runner.finish()


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _rows(url: str, name: str) -> list[str]:
    engine = create_database_engine(url)
    try:
        table = metadata.tables[name]  # driftline's own column types: aware UTC times on both dialects
        columns = [c for c in table.columns if c.name not in VOLATILE]
        with engine.connect() as connection:
            rows = connection.execute(sa.select(*columns)).mappings().all()
        return sorted(json.dumps({k: _plain(v) for k, v in row.items()}, sort_keys=True) for row in rows)
    finally:
        engine.dispose()


def _collector() -> tuple[BatchResult, Callable[[BatchResult], None]]:
    merged = BatchResult()
    return merged, merged.extend


def test_the_demo_and_the_worker_configurations_give_identical_results(kafka_bootstrap: str, database_url: str, tmp_path: Path) -> None:
    catalog = Catalog.load()
    contract = catalog.contract(MODEL)
    messages = _messages(catalog)
    profile = reference_profile(contract, SyntheticStream(contract, seed=3))  # what isolated_database stores

    sqlite_url = f"sqlite:///{tmp_path / 'demo.sqlite'}"
    upgrade_database(sqlite_url)
    demo_results, on_demo_result = _collector()
    demo_runner, demo_deadletters = build_demo_runner(
        contract=contract, profiles={profile.model_version: profile}, codec=Codec(catalog, registry_client=in_memory_registry()),
        database=tmp_path / "demo.sqlite", on_result=on_demo_result,
    )
    _feed(demo_runner, messages, [2_000], checkpoint_every=20)

    deadletter_topic = unique("deadletter-")
    create_topic(kafka_bootstrap, deadletter_topic)
    with isolated_database(database_url) as url:
        settings = WorkerSettings(
            kafka=KafkaConnection(kafka_bootstrap), database_url=url, models=(MODEL,), consumer_group=unique("g-"),
            deadletter_topic=deadletter_topic,
        )
        runtime = WorkerRuntime.open(settings)
        runtime.use_topics(prepare_topics(settings))
        worker_results, on_worker_result = _collector()
        worker_runner = runtime.make_runner(MODEL, TOPIC, 0)
        worker_runner.on_result = on_worker_result
        _feed(worker_runner, messages, [10_000, 1, 4_999, 777, 3_333], checkpoint_every=1)
        runtime.database.dispose()

        assert demo_results.alerts and demo_results.schema_changes and demo_results.signals, "the stream must drift"
        for part in ("feature_windows", "model_windows", "signals", "alerts", "schema_changes"):
            assert to_canonical_json(getattr(worker_results, part)) == to_canonical_json(getattr(demo_results, part)), part
        assert (worker_results.accepted, worker_results.rejected_by_reason, worker_results.late_events) == (
            demo_results.accepted, demo_results.rejected_by_reason, demo_results.late_events)
        assert worker_runner.counts == demo_runner.counts
        assert worker_runner.counts.consumed == EVENTS

        for name in TABLES:
            assert _rows(url, name) == _rows(sqlite_url, name), name
        kafka_deadletters = sorted(int(m.key.rsplit(":", 1)[1]) for m in read_topic(kafka_bootstrap, deadletter_topic))
        assert kafka_deadletters == [m.offset for m in demo_deadletters.messages]
        assert len(kafka_deadletters) == worker_runner.counts.dead_lettered > 0
