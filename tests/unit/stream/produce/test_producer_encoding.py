"""The producer's encoders: the columnar encoder writes exactly fastavro's bytes, and bad records name their field."""

from __future__ import annotations

import io
import json
import math
import re
import socket
from typing import Any

import fastavro
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftline.schemas import Catalog, Codec, Contract, EncodeError, FieldStatus, UnknownModelError, avro_types, in_memory_registry
from driftline.schemas.columnar_encoder import BatchEncoder
from driftline.schemas.wire import encode_single_object
from driftline.stream.demo.generator import SyntheticStream
from driftline.stream.produce.producer import DeliveryError, EventProducer

# Every type a contract can hold, nullable both ways round, and a timestamp.
SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Everything",
    "namespace": "test.producer",
    "fields": [
        {"name": "flag", "type": "boolean"},
        {"name": "small", "type": "int"},
        {"name": "big", "type": "long"},
        {"name": "when", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "single", "type": "float"},
        {"name": "real", "type": "double"},
        {"name": "text", "type": "string"},
        {"name": "colour", "type": {"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN", "BLUE"]}},
        {"name": "maybe_real", "type": ["null", "double"], "default": None},
        {"name": "maybe_text", "type": ["string", "null"], "default": "none"},
        {"name": "maybe_small", "type": ["null", "int"], "default": None},
        {"name": "maybe_colour", "type": ["null", "test.producer.Colour"], "default": None},
    ],
}
ARROW_TYPES = {
    "flag": pa.bool_(), "small": pa.int32(), "big": pa.int64(), "when": pa.int64(), "single": pa.float32(),
    "real": pa.float64(), "text": pa.string(), "colour": pa.string(), "maybe_real": pa.float64(),
    "maybe_text": pa.string(), "maybe_small": pa.int32(), "maybe_colour": pa.string(),
}
INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
COLOUR = st.sampled_from(["RED", "GREEN", "BLUE"])
RECORD = st.fixed_dictionaries({
    "flag": st.booleans(),
    "small": INT32,
    "big": INT64,
    "when": INT64,
    "single": st.floats(width=32),
    "real": st.floats(),
    "text": st.text(max_size=30),
    "colour": COLOUR,
    "maybe_real": st.none() | st.floats(),
    "maybe_text": st.none() | st.text(max_size=5),
    "maybe_small": st.none() | INT32,
    "maybe_colour": st.none() | COLOUR,
})
HEADER = b"\xc3\x01" + bytes(range(8))


def _fastavro(record: dict[str, Any], schema: Any = SCHEMA) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


def _table(records: list[dict[str, Any]]) -> pa.Table:
    return pa.table({name: pa.array([r[name] for r in records], type=kind) for name, kind in ARROW_TYPES.items()})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(RECORD, min_size=1, max_size=25))
def test_columnar_encoding_is_byte_for_byte_fastavros(records: list[dict[str, Any]]) -> None:
    payloads = BatchEncoder(SCHEMA, HEADER).encode(_table(records))
    assert payloads == [HEADER + _fastavro(record) for record in records]


def test_synthetic_credit_risk_events_match_the_per_record_encoder(contract: Contract) -> None:
    stream = SyntheticStream(contract, seed=11)
    columns = stream.columns(3000)
    times = stream.event_times(3000)
    records = stream.records(columns, times)
    batch: dict[str, Any] = dict(columns)  # numpy: float64 with NaN for nulls, object arrays of str
    batch.update(
        event_id=[r["event_id"] for r in records], event_time=times, model_name=["credit_risk"] * 3000, model_version=["v1"] * 3000
    )
    header = b"\xc3\x01" + avro_types.fingerprint_bytes(contract.fingerprint)
    assert BatchEncoder(contract.schema_json, header).encode(batch) == [encode_single_object(r, contract) for r in records]


def test_nan_is_null_only_in_nullable_numpy_columns() -> None:
    records = [dict(r) for r in [
        {"flag": True, "small": 1, "big": 2, "when": 3, "single": 0.5, "real": math.nan, "text": "a", "colour": "RED",
         "maybe_real": None, "maybe_text": None, "maybe_small": None, "maybe_colour": None},
    ]]
    columns: dict[str, Any] = {name: [records[0][name]] for name in ARROW_TYPES}
    columns["real"] = np.array([math.nan])
    columns["maybe_real"] = np.array([math.nan])
    payload = BatchEncoder(SCHEMA).encode(columns)[0]
    decoded = fastavro.schemaless_reader(io.BytesIO(payload), fastavro.parse_schema(SCHEMA))
    assert math.isnan(decoded["real"]) and decoded["maybe_real"] is None


def test_a_missing_column_takes_the_fields_default() -> None:
    record = {"flag": False, "small": 0, "big": 0, "when": 0, "single": 0.0, "real": 0.0, "text": "", "colour": "BLUE"}
    columns = {name: [value] for name, value in record.items()}
    payload = BatchEncoder(SCHEMA).encode(columns)[0]
    assert payload == _fastavro(record | {"maybe_real": None, "maybe_text": "none", "maybe_small": None, "maybe_colour": None})


def _good_columns(rows: int = 3) -> dict[str, list[Any]]:
    record = {"flag": True, "small": 1, "big": 2, "when": 3, "single": 0.5, "real": 0.25, "text": "x", "colour": "RED",
              "maybe_real": None, "maybe_text": "y", "maybe_small": 4, "maybe_colour": "BLUE"}
    return {name: [value] * rows for name, value in record.items()}


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("small", [1, None, 3], "field 'small', row 1: null, but the field is not nullable"),
        ("small", pa.array([1.0, 2.0, 2.5]), "field 'small', row 2: 2.5 is not a whole number (int)"),
        ("small", [1, 2**31, 3], "field 'small', row 1: 2147483648 does not fit an int (32 bits)"),
        ("maybe_small", [None, None, 2**40], "field 'maybe_small', row 2: 1099511627776 does not fit an int"),
        ("colour", ["RED", "PINK", "RED"], "field 'colour', row 1: 'PINK' is not a symbol of the enum"),
        ("real", ["1.0", "2.0", "3.0"], "field 'real', row 0: a string column cannot be written as double"),
        ("text", [1, 2, 3], "field 'text', row 0: a int64 column cannot be written as string"),
    ],
)
def test_values_the_schema_cannot_hold_name_field_and_row(column: str, values: Any, message: str) -> None:
    columns: dict[str, Any] = _good_columns()
    columns[column] = values
    with pytest.raises(EncodeError, match=re.escape(message)):
        BatchEncoder(SCHEMA).encode(columns)


def test_a_missing_column_without_default_is_named() -> None:
    columns = _good_columns()
    del columns["text"]
    with pytest.raises(EncodeError, match="field 'text': no such column, and the field has no default"):
        BatchEncoder(SCHEMA).encode(columns)


def test_schemas_that_are_not_flat_records_are_refused() -> None:
    nested = {"type": "record", "name": "N", "fields": [{"name": "xs", "type": {"type": "array", "items": "int"}}]}
    with pytest.raises(ValueError, match="field 'xs'"):
        BatchEncoder(nested)


# -- EventProducer without a broker ---------------------------------------------------------------


def _closed_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"  # nothing listens once the socket is closed


@pytest.fixture()
def record(contract: Contract) -> dict[str, Any]:
    stream = SyntheticStream(contract, seed=5)
    return stream.records(stream.columns(1), stream.event_times(1))[0]


@pytest.mark.parametrize(
    ("change", "field"),
    [({"age": 41.5}, "age"), ({"age": "41"}, "age"), ({"credit_score": 2**40}, "credit_score"),
     ({"annual_income": "rich"}, "annual_income"), ({"region": 7}, "region"), ({"employment_type": 3}, "employment_type")],
)
def test_send_names_the_field_a_record_gets_wrong(record: dict[str, Any], change: dict[str, Any], field: str) -> None:
    producer = EventProducer(_closed_port(), model="credit_risk")
    with pytest.raises(EncodeError, match=f"field '{field}'"):
        producer.send(record | change)
    assert producer.sent == 0


def test_send_names_a_missing_field(record: dict[str, Any]) -> None:
    del record["loan_amount"]
    with pytest.raises(EncodeError, match="'loan_amount'"):
        EventProducer(_closed_port(), model="credit_risk").send(record)


def test_undeliverable_messages_are_reported_by_flush_not_lost(record: dict[str, Any]) -> None:
    producer = EventProducer(_closed_port(), model="credit_risk", producer_config={"message.timeout.ms": 1000})
    producer.send(record)
    producer.send(record | {"event_id": "evt-2"})
    with pytest.raises(DeliveryError) as failure:
        producer.flush(15)
    assert failure.value.failures == 2
    assert "timed out" in str(failure.value).lower()
    assert producer.flush(1) == 0  # reported once, not again


def test_the_context_manager_raises_on_failed_delivery(record: dict[str, Any]) -> None:
    closed = EventProducer(_closed_port(), model="credit_risk", producer_config={"message.timeout.ms": 500})
    with pytest.raises(DeliveryError), closed as producer:
        producer.send(record)


def test_bad_producer_arguments_name_the_parameter() -> None:
    with pytest.raises(UnknownModelError, match="known models and feature sets: credit_features, credit_risk"):
        EventProducer("127.0.0.1:9092", model="fraud")
    with pytest.raises(ValueError, match="wire_format"):
        EventProducer("127.0.0.1:9092", model="credit_risk", wire_format="json")
    with pytest.raises(ValueError, match="schema_registry_url"):
        EventProducer("127.0.0.1:9092", model="credit_risk", wire_format="confluent")
    with pytest.raises(ValueError, match="producer_config"):
        EventProducer("127.0.0.1:9092", model="credit_risk", producer_config={"linger.ms": "soon"})


@pytest.mark.parametrize("wire_format", ["single-object", "confluent"])
def test_encoded_batches_decode_with_the_codec(catalog: Catalog, contract: Contract, wire_format: str) -> None:
    registry = in_memory_registry()
    producer = EventProducer(_closed_port(), model="credit_risk", wire_format=wire_format, registry_client=registry)
    stream = SyntheticStream(contract, seed=2)
    columns = stream.columns(500)
    times = stream.event_times(500)
    records = stream.records(columns, times)
    encoded = producer.encode_batch(pa.Table.from_pylist(records))
    assert encoded.keys == [r["event_id"] for r in records]
    batch = Codec(catalog, registry_client=registry).decode_batch(encoded.payloads, "credit_risk")
    assert batch.n_accepted == 500 and not batch.rejections
    assert batch.event_time_ms.tolist() == times.tolist()
    for spec in contract.monitored_fields:
        expected = [r[spec.name] for r in records]
        nulls = batch.status[spec.name] == FieldStatus.NULL
        assert nulls.tolist() == [v is None for v in expected], spec.name
        got = batch.values[spec.name][~nulls].tolist()
        assert got == [v for v in expected if v is not None], spec.name
    if wire_format == "confluent":
        assert producer.schema_id is not None
        assert json.loads(registry.get_schema(producer.schema_id).schema_str)["name"] == "Prediction"


def test_registry_modes_register_or_write_with_the_latest_version(catalog: Catalog, contract: Contract) -> None:
    # confluent-kafka's in-memory registry (no compatibility rule: tests/integration/test_schema_registry.py
    # has the refusals of a real one).
    from pathlib import Path

    import driftline.schemas
    from driftline.schemas.errors import RegistryError

    registry = in_memory_registry()
    # A producer that added an optional field (a default of null): shipped in the catalog of writer schemas.
    segment = json.loads((Path(driftline.schemas.__file__).parent / "catalog/credit_risk_v1_1_segment.avsc").read_text())

    def producer(**options: Any) -> EventProducer:
        return EventProducer(_closed_port(), model="credit_risk", wire_format="confluent", registry_client=registry, topic="t", **options)

    with pytest.raises(RegistryError, match=r"no latest version of t-value to write with: .*registers nothing"):
        producer(registry_mode="use-latest")  # nothing registered yet: refused before anything is sent
    assert producer().schema_id == 1  # auto-register (the default): the contract's schema under t-value
    assert producer(writer_schema=segment).schema_id == 2  # an evolved writer schema: a new version
    latest = producer(registry_mode="use-latest")
    assert latest.schema_id == 2  # writes with the latest version, registers nothing
    assert [subject for subject in registry.get_subjects()] == ["t-value"]
    assert len(registry.get_versions("t-value")) == 2

    stream = SyntheticStream(contract, seed=4)
    records = stream.records(stream.columns(50), stream.event_times(50))
    encoded = latest.encode_batch(pa.Table.from_pylist(records))  # the new field is not in the events: its default
    assert {payload[:5] for payload in encoded.payloads} == {b"\x00\x00\x00\x00\x02"}
    batch = Codec(catalog, registry_client=registry).decode_batch(encoded.payloads, "credit_risk")
    assert batch.n_accepted == 50
    [change] = batch.schema_changes
    assert change.writer_id == "2" and change.diff.compatible and change.diff.new_fields == ("customer_segment",)
    # A writer schema that is not registered is refused in use-latest (the demo's renamed producer, say).
    renamed = dict(contract.schema_json, fields=[dict(f, name="dti_ratio") if f["name"] == "debt_to_income" else f
                                                 for f in contract.schema_json["fields"]])
    with pytest.raises(RegistryError, match="not registered under t-value, and --registry-mode use-latest registers nothing"):
        latest.encode_batch(pa.Table.from_pylist(records), writer_schema=renamed)


def test_bad_registry_modes_name_the_parameter() -> None:
    registry = in_memory_registry()
    with pytest.raises(ValueError, match="registry_mode must be one of"):
        EventProducer("127.0.0.1:9092", model="credit_risk", wire_format="confluent", registry_client=registry, registry_mode="latest")
    with pytest.raises(ValueError, match="writer_schema: with registry_mode 'use-latest'"):
        EventProducer("127.0.0.1:9092", model="credit_risk", wire_format="confluent", registry_client=registry,
                      registry_mode="use-latest", writer_schema={"type": "record", "name": "X", "fields": []})
