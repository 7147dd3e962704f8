"""Schema-change alerts are dated by the events themselves: any batching, and any replay, gives the same ones.

The stream starts with events of a writer schema that renamed ``event_time`` to ``ts`` (incompatible,
and its events carry no readable event time: the change waits for the next dated event), then clean
events, a producer renaming ``debt_to_income`` (incompatible, dated by the rejected event's own time),
another renaming ``event_time`` to ``when`` amid dated events (dated by the latest time before it), and
a compatible writer adding an optional field (dated by its first, accepted, event). Corrupt bytes are
sprinkled in.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftline.schemas.codec import Codec, encode_single_object
from driftline.schemas.contract import Contract
from driftline.schemas.contract_catalog import Catalog
from driftline.sinks import SqlCheckpointStore, create_database_engine, upgrade_database
from driftline.stream.demo.generator import SyntheticStream
from driftline.stream.monitor.profile import ReferenceProfile
from driftline.stream.monitor.results import BatchResult, to_canonical_json
from driftline.stream.runner import (
    CheckpointStore,
    EncodedMessage,
    InMemoryCheckpointStore,
    InMemoryDeadLetters,
    PartitionKey,
    PartitionRunner,
)

EVENTS = 1_500


def _renamed(contract: Contract, old: str, new: str) -> dict[str, Any]:
    schema = copy.deepcopy(contract.schema_json)
    for field in schema["fields"]:
        if field["name"] == old:
            field["name"] = new
            field.pop("driftline", None)
    return schema


def _with_note(contract: Contract) -> dict[str, Any]:
    schema = copy.deepcopy(contract.schema_json)
    schema["fields"].append({"name": "note", "type": ["null", "string"], "default": None})
    return schema


@pytest.fixture(scope="module")
def writer_catalog() -> Catalog:
    return Catalog.load()


@pytest.fixture(scope="module")
def messages(writer_catalog: Catalog) -> list[EncodedMessage]:
    contract = writer_catalog.contract("credit_risk")
    no_time = _renamed(contract, "event_time", "ts")
    no_time_later = _renamed(contract, "event_time", "when")
    no_dti = _renamed(contract, "debt_to_income", "dti_ratio")
    note = _with_note(contract)
    for schema in (no_time, no_time_later, no_dti, note):
        writer_catalog.register_writer_schema(schema)
    stream = SyntheticStream(contract, seed=11, events_per_second=5)
    records = stream.records(stream.columns(EVENTS), stream.event_times(EVENTS))
    payloads: list[bytes] = []
    for position, record in enumerate(records):
        if position < 5:
            record["ts"] = record.pop("event_time")
            payloads.append(encode_single_object(record, no_time))
        elif 700 <= position < 720:
            record["when"] = record.pop("event_time")
            payloads.append(encode_single_object(record, no_time_later))
        elif 300 <= position < 500:
            record["dti_ratio"] = record.pop("debt_to_income")
            payloads.append(encode_single_object(record, no_dti))
        elif 900 <= position < 1_000:
            payloads.append(encode_single_object({**record, "note": "x"}, note))
        elif position % 97 == 0:
            payloads.append(b"\xc3\x01 corrupt")
        else:
            payloads.append(encode_single_object(record, contract.schema_json))
    return [EncodedMessage(offset, payload, 0) for offset, payload in enumerate(payloads)]


def _run(catalog: Catalog, profile: ReferenceProfile, messages: list[EncodedMessage], cuts: list[int], store: CheckpointStore | None = None,
         group: str = "g") -> BatchResult:
    store = store if store is not None else InMemoryCheckpointStore()
    runner = PartitionRunner(
        key=PartitionKey(group, "predictions.credit_risk", 0), contract=catalog.contract("credit_risk"),
        profiles={profile.model_version: profile}, codec=Codec(catalog), store=store, deadletters=InMemoryDeadLetters(),
    )
    produced = BatchResult()
    runner.on_result = produced.extend
    for start, stop in zip([0, *cuts], [*cuts, len(messages)]):
        runner.process(messages[start:stop])
        runner.checkpoint()
    return produced


@pytest.fixture(scope="module")
def whole(writer_catalog: Catalog, profile: ReferenceProfile, messages: list[EncodedMessage]) -> BatchResult:
    return _run(writer_catalog, profile, messages, [])


def test_every_change_is_reported_once_and_dated_by_its_own_events(whole: BatchResult, writer_catalog: Catalog) -> None:
    changes = {c.writer_id: c for c in whole.schema_changes}
    assert len(changes) == len(whole.schema_changes) == 4
    alerts = [a for a in whole.alerts if a.kind == "schema_change"]
    assert [a.event_time_ms for a in alerts] == [c.first_seen_event_time_ms for c in whole.schema_changes]
    contract = writer_catalog.contract("credit_risk")
    times = SyntheticStream(contract, seed=11, events_per_second=5).event_times(EVENTS)
    dated = {c.new_fields[0]: c.first_seen_event_time_ms for c in whole.schema_changes}
    decoded_before_700 = [p for p in range(5, 700) if not 300 <= p < 500 and p % 97]
    assert dated == {
        "ts": times[5],  # nothing dated before it: the next dated event (events 0-4 carry no time)
        "dti_ratio": times[300],  # its first (rejected) event's own time
        "when": max(times[decoded_before_700]),  # no time of its own: the latest event time before it
        "note": times[900],  # its first (accepted) event's own time
    }
    # The renamed debt_to_income's 200 events are rejected, yet counted in the windows of their own time;
    # the 25 whose event time was renamed cannot be placed (rejected too, for the same reason).
    assert whole.rejected_by_reason["missing_field"] == 225
    assert sum(dict(w.rejected_by_reason).get("missing_field", 0) for w in whole.model_windows) == 200


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(1, EVENTS - 1), max_size=12, unique=True).map(sorted))
def test_any_batching_gives_identical_schema_change_alerts(
    cuts: list[int], writer_catalog: Catalog, profile: ReferenceProfile, messages: list[EncodedMessage], whole: BatchResult
) -> None:
    batched = _run(writer_catalog, profile, messages, cuts)
    assert to_canonical_json(batched.schema_changes) == to_canonical_json(whole.schema_changes)
    assert to_canonical_json(batched.alerts) == to_canonical_json(whole.alerts)
    # The rejected events of the incompatible writers are placed in their windows the same way, however batched.
    assert to_canonical_json(batched.model_windows) == to_canonical_json(whole.model_windows)
    assert to_canonical_json(batched.feature_windows) == to_canonical_json(whole.feature_windows)


def test_replaying_a_processed_range_adds_no_alert(
    writer_catalog: Catalog, profile: ReferenceProfile, messages: list[EncodedMessage], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'replay.sqlite'}"
    upgrade_database(url)
    engine = create_database_engine(url)
    store = SqlCheckpointStore(engine)
    _run(writer_catalog, profile, messages, [400, 800], store, group="live")

    def alert_rows() -> list[tuple[Any, ...]]:
        with engine.connect() as connection:
            return sorted(connection.exec_driver_sql("SELECT alert_id, kind, event_time FROM alerts").all())

    live = alert_rows()
    assert any(kind == "schema_change" for _, kind, _ in live)
    _run(writer_catalog, profile, messages, [123, 1_234], store, group="replay")  # the same range, cut otherwise
    assert alert_rows() == live
