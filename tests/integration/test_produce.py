"""``driftline produce`` and the producer API against the real Kafka broker of ``deploy/local``.

Every test publishes to a fresh, uniquely named topic, reads it back with confluent-kafka and
decodes every message with the project's codec.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from decoded_events import assert_decodes_to
from worker_harness import create_topic

from driftline.schemas import Catalog, Codec, Contract, RejectReason, in_memory_registry
from driftline.stream.cli import main
from driftline.stream.demo.generator import SyntheticStream
from driftline.stream.produce.producer import EventProducer


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


@pytest.fixture(scope="module")
def contract(catalog: Catalog) -> Contract:
    return catalog.contract("credit_risk")


@pytest.fixture()
def topic(kafka_bootstrap: str) -> Any:
    name = f"predictions.test_produce_{uuid.uuid4().hex[:12]}"
    yield name
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})  # must outlive its futures
    for future in admin.delete_topics([name]).values():
        with contextlib.suppress(KafkaException):  # a test that failed before creating it
            future.result(30)


def _run(argv: tuple[str, ...]) -> int:
    """``driftline produce ARGV``'s exit code, through the command line's own error handling."""
    return main(["produce", *argv])


def _consume(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list[Any]:
    """Every message of the topic's only partition, from the start; at least ``expected`` of them."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            for message in consumer.consume(10_000, 1.0):
                assert message.error() is None, message.error()
                messages.append(message)
        # Nothing beyond what was sent: one more short read must come back empty.
        messages.extend(m for m in consumer.consume(1_000, 1.0) if m.error() is None)
    finally:
        consumer.close()
    return messages


def _records(contract: Contract, rows: int, seed: int = 3) -> list[dict[str, Any]]:
    stream = SyntheticStream(contract, seed=seed)
    return stream.records(stream.columns(rows), stream.event_times(rows))


def test_produce_publishes_a_json_lines_file(
    kafka_bootstrap: str, topic: str, catalog: Catalog, contract: Contract, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = _records(contract, 2_500)
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    assert _run(("--model", "credit_risk", "--input", str(path), "--topic", topic, "--bootstrap", kafka_bootstrap, "-q")) == 0
    assert "sent 2,500 events" in capsys.readouterr().out
    messages = _consume(kafka_bootstrap, topic, len(records))
    assert len(messages) == len(records)
    assert [m.key().decode() for m in messages] == [r["event_id"] for r in records]
    assert_decodes_to(Codec(catalog).decode_batch([m.value() for m in messages], "credit_risk"), contract, records)


def test_produce_reads_the_bootstrap_from_the_environment(
    kafka_bootstrap: str, topic: str, catalog: Catalog, contract: Contract, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTLINE_KAFKA_BOOTSTRAP", kafka_bootstrap)
    records = _records(contract, 300, seed=8)
    path = tmp_path / "events.csv"
    table = pa.Table.from_pylist(records)
    pacsv.write_csv(table, path)
    lines = path.read_text().splitlines()
    lines.insert(101, lines[100].replace('"v1"', '"v1",9,9'))  # a row with too many fields: skipped, counted
    path.write_text("\n".join(lines) + "\n")
    assert _run(("--model", "credit_risk", "--input", str(path), "--topic", topic, "--skip-invalid", "-q")) == 0
    messages = _consume(kafka_bootstrap, topic, len(records))
    assert_decodes_to(Codec(catalog).decode_batch([m.value() for m in messages], "credit_risk"), contract, records)


def test_produce_publishes_the_synthetic_stream(
    kafka_bootstrap: str, topic: str, catalog: Catalog, contract: Contract, capsys: pytest.CaptureFixture[str]
) -> None:
    events = 20_000
    argv = ["--model", "credit_risk", "--synthetic", str(events), "--seed", "5", "--events-per-second", "50"]
    assert _run((*argv, "--topic", topic, "--bootstrap", kafka_bootstrap, "-q")) == 0
    assert f"sent {events:,} events" in capsys.readouterr().out
    messages = _consume(kafka_bootstrap, topic, events)
    assert len(messages) == events
    stream = SyntheticStream(contract, seed=5, events_per_second=50)
    expected = []
    for offset in range(0, events, 2_000):  # the generator's batches (the demo's)
        expected.extend(stream.records(stream.columns(2_000, offset=offset), stream.event_times(2_000, offset=offset), offset=offset))
    assert_decodes_to(Codec(catalog).decode_batch([m.value() for m in messages], "credit_risk"), contract, expected)


def test_the_drift_stream_carries_the_producer_schema_change(kafka_bootstrap: str, topic: str, catalog: Catalog) -> None:
    events = 10_000
    assert _run(("--model", "credit_risk", "--synthetic", str(events), "--drift", "--topic", topic, "--bootstrap", kafka_bootstrap, "-q")) == 0
    messages = _consume(kafka_bootstrap, topic, events)
    assert len(messages) == events
    batch = Codec(catalog).decode_batch([m.value() for m in messages], "credit_risk")
    renamed = {r.index for r in batch.rejections if r.reason == RejectReason.MISSING_FIELD}
    assert renamed == set(range(5_000, 5_800))  # the demo's rename episode
    assert len(batch.schema_changes) == 1 and batch.schema_changes[0].diff.renamed_fields == (("debt_to_income", "dti_ratio"),)


def test_rate_spreads_the_messages_over_wall_clock_time(kafka_bootstrap: str, topic: str) -> None:
    events, rate = 1_500, 3_000.0
    argv = ["--model", "credit_risk", "--synthetic", str(events), "--rate", str(rate)]
    assert _run((*argv, "--topic", topic, "--bootstrap", kafka_bootstrap, "-q")) == 0
    messages = _consume(kafka_bootstrap, topic, events)
    stamps = np.array([m.timestamp()[1] for m in messages])
    # Message i is released no earlier than i / rate after the first: a lower bound, not a speed test
    # (unthrottled, 1,500 messages leave within a few milliseconds). The margin absorbs the wall
    # clock's millisecond stamps and slewing.
    assert stamps[-1] - stamps[0] >= 0.9 * 1000 * (events - 1) / rate


@pytest.mark.parametrize("wire_format", ["single-object", "confluent"])
def test_the_producer_api_sends_records_the_codec_reads(
    kafka_bootstrap: str, topic: str, catalog: Catalog, contract: Contract, wire_format: str
) -> None:
    records = _records(contract, 400, seed=12)
    registry = in_memory_registry()
    create_topic(kafka_bootstrap, topic)  # a model server's topic exists (driftline worker creates it)
    with EventProducer(kafka_bootstrap, model="credit_risk", topic=topic, wire_format=wire_format, registry_client=registry) as producer:
        for record in records[:200]:
            producer.send(record)
        producer.send_batch(pa.Table.from_pylist(records[200:]))
    assert producer.sent == 400
    messages = _consume(kafka_bootstrap, topic, len(records))
    assert len(messages) == 400
    codec = Codec(catalog, registry_client=registry)
    assert_decodes_to(codec.decode_batch([m.value() for m in messages], "credit_risk"), contract, records)
    # The per-record and the columnar encoder write the same bytes.
    assert messages[0].value()[:1] == (b"\x00" if wire_format == "confluent" else b"\xc3")
    again = producer.encode_batch(pa.Table.from_pylist(records[:200]))
    assert again.payloads == [m.value() for m in messages[:200]]
