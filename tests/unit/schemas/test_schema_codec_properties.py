"""Property tests of the codec: valid events round-trip, and no byte string can make it raise."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from confluent_kafka.schema_registry import Schema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftline.schemas import (
    Catalog,
    Codec,
    DecodedBatch,
    FieldContract,
    FieldStatus,
    Rejection,
    encode_confluent,
    encode_single_object,
    in_memory_registry,
    parse_contract,
)

CATALOG = Catalog.load()
CONTRACT = CATALOG.contract("credit_risk")
REGISTRY = in_memory_registry()
SCHEMA_ID = REGISTRY.register_schema("predictions.credit_risk-value", Schema(json.dumps(CONTRACT.schema_json), "AVRO"))
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _value(spec: FieldContract) -> st.SearchStrategy[Any]:
    if spec.role == "model_name":
        return st.just(CONTRACT.model)
    if spec.kind == "timestamp":
        return st.integers(-(2**63), 2**63 - 1)
    if spec.kind == "string":
        return st.text(max_size=40)
    if spec.kind == "categorical":
        values: st.SearchStrategy[Any] = st.sampled_from(spec.categories)
    elif spec.avro_type in ("int", "long"):
        assert spec.range is not None
        values = st.integers(int(spec.range[0]), int(spec.range[1]))
    else:
        assert spec.range is not None
        values = st.floats(spec.range[0], spec.range[1], allow_nan=False)
    return st.none() | values if spec.nullable else values


VALID_RECORD = st.fixed_dictionaries({spec.name: _value(spec) for spec in CONTRACT.fields})


def _check_reconciles(batch: DecodedBatch, n: int) -> None:
    assert batch.n_input == n
    assert batch.n_accepted + len(batch.rejections) == n
    indexes = [r.index for r in batch.rejections]
    assert len(set(indexes)) == len(indexes) and all(0 <= i < n for i in indexes)
    assert all(isinstance(r, Rejection) and r.detail for r in batch.rejections)
    accepted_rows = set(batch.rows[batch.accepted].tolist())
    assert not accepted_rows & set(indexes)
    # every accepted row satisfies the contract's reject policies
    for spec in CONTRACT.monitored_fields:
        if spec.rejects:
            status = batch.status[spec.name][batch.accepted]
            assert np.isin(status, [FieldStatus.OK, FieldStatus.NULL]).all(), spec.name


@SETTINGS
@given(st.lists(VALID_RECORD, min_size=1, max_size=12), st.booleans())
def test_valid_records_round_trip_in_both_formats(records: list[dict[str, Any]], confluent: bool) -> None:
    if confluent:
        payloads = [encode_confluent(r, CONTRACT.schema_json, SCHEMA_ID) for r in records]
    else:
        payloads = [encode_single_object(r, CONTRACT) for r in records]
    batch = Codec(CATALOG, registry_client=REGISTRY).decode_batch(payloads, model="credit_risk")
    assert batch.rejections == [] and batch.accepted.all()
    assert batch.rows.tolist() == list(range(len(records)))
    assert batch.event_id.tolist() == [r["event_id"] for r in records]
    assert batch.event_time_ms.tolist() == [r["event_time"] for r in records]
    assert batch.model_version.tolist() == [r["model_version"] for r in records]
    for spec in CONTRACT.monitored_fields:
        for row, record in enumerate(records):
            got, want = batch.values[spec.name][row], record[spec.name]
            if want is None:
                assert batch.status[spec.name][row] == FieldStatus.NULL
                assert got is None or math.isnan(got)
            else:
                assert batch.status[spec.name][row] == FieldStatus.OK
                assert got == (want if spec.kind == "categorical" else float(want)), spec.name


HEADERS = st.sampled_from(
    [b"", b"\x00", b"\x00" + SCHEMA_ID.to_bytes(4, "big"), b"\xc3\x01", b"\xc3\x01" + CONTRACT.fingerprint.to_bytes(8, "little")]
)
FRAMED_GARBAGE = st.builds(lambda header, body: header + body, HEADERS, st.binary(max_size=300))


@SETTINGS
@given(st.lists(st.binary(max_size=300) | FRAMED_GARBAGE, max_size=25))
def test_arbitrary_bytes_never_raise_and_always_reconcile(payloads: list[bytes]) -> None:
    codec = Codec(CATALOG, registry_client=REGISTRY, max_message_bytes=250)
    batch = codec.decode_batch(payloads, model="credit_risk")
    _check_reconciles(batch, len(payloads))
    for payload in payloads[:3]:
        assert codec.decode(payload) is not None


_OPERATIONS = st.sampled_from(["truncate", "flip", "insert", "delete", "swap_header"])


@SETTINGS
@given(VALID_RECORD, st.booleans(), st.lists(st.tuples(_OPERATIONS, st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4))
def test_mutated_and_truncated_messages_never_raise(record: dict[str, Any], confluent: bool, operations: list[tuple[str, int, int]]) -> None:
    valid = encode_confluent(record, CONTRACT.schema_json, SCHEMA_ID) if confluent else encode_single_object(record, CONTRACT)
    payload = bytearray(valid)
    for operation, position, byte in operations:
        at = position % (len(payload) + 1)
        if operation == "truncate":
            del payload[at:]
        elif operation == "flip" and at < len(payload):
            payload[at] = byte
        elif operation == "insert":
            payload.insert(at, byte)
        elif operation == "delete" and at < len(payload):
            del payload[at]
        elif operation == "swap_header":
            payload[:1] = b"\xc3\x01" + bytes(8) if confluent else b"\x00"
    payloads = [valid, bytes(payload), valid]
    batch = Codec(CATALOG, registry_client=REGISTRY).decode_batch(payloads, model="credit_risk")
    _check_reconciles(batch, 3)
    assert batch.accepted[batch.rows == 0].all() and batch.accepted[batch.rows == 2].all()


FRAUD = {
    "type": "record", "name": "Prediction", "namespace": "driftline.models.fraud",
    "driftline": {"model": "fraud", "contract_version": 1},
    "fields": [
        {"name": "event_id", "type": "string", "driftline": {"role": "id"}},
        {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-millis"}, "driftline": {"role": "event_time"}},
        {"name": "model_name", "type": "string", "driftline": {"role": "model_name"}},
        {"name": "model_version", "type": "string", "driftline": {"role": "model_version"}},
        {"name": "amount", "type": "double", "driftline": {"role": "feature", "range": [0, 100]}},
    ],
}
TWO_MODELS = Catalog([CONTRACT, parse_contract(FRAUD)])
FRAUD_EVENT = st.builds(
    lambda amount, name: encode_single_object(
        {"event_id": "f", "event_time": 0, "model_name": name, "model_version": "1", "amount": amount}, FRAUD
    ),
    st.floats(-10, 110, allow_nan=False),
    st.sampled_from(["fraud", "credit_risk", "churn"]),
)
CREDIT_EVENT = st.builds(lambda record: encode_single_object(record, CONTRACT), VALID_RECORD)


@SETTINGS
@given(st.lists(FRAUD_EVENT | CREDIT_EVENT | st.binary(max_size=40), max_size=15))
def test_mixed_model_streams_reconcile_per_batch_and_overall(payloads: list[bytes]) -> None:
    codec = Codec(TWO_MODELS)
    result = codec.decode_batches(payloads)
    seen: list[int] = [r.index for r in result.rejections]
    for name, batch in result.batches.items():
        assert batch.n_accepted + len(batch.rejections) == batch.n_input
        seen += [r.index for r in batch.rejections] + batch.rows[batch.accepted].tolist()
        assert batch.values.keys() == {f.name for f in TWO_MODELS.contract(name).monitored_fields}
    assert sorted(seen) == list(range(len(payloads)))
    single = codec.decode_batch(payloads)
    indexes = [r.index for r in single.rejections] + single.rows[single.accepted].tolist()
    assert sorted(indexes) == list(range(len(payloads)))
