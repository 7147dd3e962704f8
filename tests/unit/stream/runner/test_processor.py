"""PartitionProcessor on SQLite: redelivered messages are skipped, a restart continues exactly.

The dead-letter topic is replaced by a list here; the real topic is exercised end to end in
tests/integration (test_bad_input.py, test_exactly_once.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from driftline.schemas.codec import Codec, encode_single_object
from driftline.schemas.contract import Catalog
from driftline.schemas.results import Rejection
from driftline.sinks.database import create_database_engine
from driftline.sinks.sql import SqlSink
from driftline.stream.demo.demo import reference_profile
from driftline.stream.demo.generator import SyntheticStream
from driftline.stream.runner.processor import InboundMessage, PartitionProcessor
from driftline.stream.monitor.results import to_canonical_json


class RecordedDeadLetters:
    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []
        self.flushed = 0

    def send(self, payload: bytes | None, *, topic: str, partition: int, offset: int, rejection: Rejection) -> None:
        self.sent.append((offset, rejection.reason.value))

    def flush(self, timeout: float = 30.0) -> None:
        self.flushed = len(self.sent)


@pytest.fixture(scope="module")
def messages() -> list[InboundMessage]:
    contract = Catalog.load().contract("credit_risk")
    stream = SyntheticStream(contract, seed=2, events_per_second=20)
    records = stream.records(stream.columns(3_000), stream.event_times(3_000))
    payloads = [encode_single_object(r, contract.schema_json) for r in records]
    payloads[100] = b"\xff garbage"
    return [InboundMessage(offset, payload, 0) for offset, payload in enumerate(payloads)]


def _processor(sink: SqlSink, deadletter: RecordedDeadLetters) -> PartitionProcessor:
    catalog = Catalog.load()
    contract = catalog.contract("credit_risk")
    profile = reference_profile(contract, SyntheticStream(contract, seed=3), rows=5_000)
    return PartitionProcessor(
        topic="predictions.credit_risk", partition=0, consumer_group="g", contract=contract,
        profiles={profile.model_version: profile}, codec=Codec(catalog), sink=sink, deadletter=deadletter,  # type: ignore[arg-type]
    )


def _sink(path: Path) -> SqlSink:
    sink = SqlSink(create_database_engine(f"sqlite:///{path}"))
    sink.create_schema()
    return sink


def test_a_restart_skips_what_the_checkpoint_covers_and_continues_exactly(messages: list[InboundMessage], tmp_path: Path) -> None:
    whole = _processor(_sink(tmp_path / "whole.sqlite"), RecordedDeadLetters())
    whole.process(messages)

    sink, deadletter = _sink(tmp_path / "restarted.sqlite"), RecordedDeadLetters()
    first = _processor(sink, deadletter)
    first.process(messages[:1_200])
    assert first.checkpoint() is not None and deadletter.flushed == 1  # dead letters acknowledged first
    first.process(messages[1_200:1_500])  # processed, never checkpointed: lost with the "crash"

    second = _processor(sink, deadletter)
    assert second.restored and second.next_offset == 1_200
    assert second.process(messages[:1_200]) is None and second.skipped == 1_200  # redelivered: skipped
    second.process(messages[1_000:])  # overlapping redelivery: only offsets >= 1200 count
    assert second.skipped == 1_400
    assert (second.counts.consumed, second.counts.accepted, second.counts.dead_lettered) == (3_000, 2_999, 1)
    assert to_canonical_json(second.engine.to_state()) == to_canonical_json(whole.engine.to_state())
    assert [offset for offset, _ in deadletter.sent] == [100]


def test_offsets_must_increase(messages: list[InboundMessage], tmp_path: Path) -> None:
    processor = _processor(_sink(tmp_path / "p.sqlite"), RecordedDeadLetters())
    with pytest.raises(ValueError, match="not increasing"):
        processor.process([messages[5], messages[3]])


def test_nothing_new_writes_no_checkpoint(messages: list[InboundMessage], tmp_path: Path) -> None:
    sink = _sink(tmp_path / "p.sqlite")
    processor = _processor(sink, RecordedDeadLetters())
    assert processor.checkpoint() is None
    assert sink.load_checkpoint("g", "predictions.credit_risk", 0) is None
    processor.process(messages[:10])
    written: Any = processor.checkpoint()
    assert written.next_offset == 10 and processor.checkpoint() is None
