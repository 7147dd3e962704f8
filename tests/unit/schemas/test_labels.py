"""LabelCodec: label events decoded from both wire formats; every unusable payload rejected with a reason."""

from __future__ import annotations

import copy
import doctest
import json

import pytest
from confluent_kafka.schema_registry import Schema

import driftline.schemas.labels as labels_module
from driftline.schemas import Catalog, in_memory_registry
from driftline.schemas.codec import Codec
from driftline.schemas.labels import LABEL_RECORD, LabelCodec
from driftline.schemas.results import RejectReason
from driftline.schemas.wire import encode_confluent, encode_single_object

CATALOG = Catalog.load()
LABEL_SCHEMA = CATALOG.event_schema(LABEL_RECORD)
WHEN = 1_764_400_000_123  # 2025-11-29, to the millisecond


def _label(event_id: str = "e1", model: str = "credit_risk", label: float = 1.0, time_ms: int = WHEN) -> dict[str, object]:
    return {"event_id": event_id, "model_name": model, "label": label, "label_time": time_ms}


def test_labels_in_single_object_encoding_decode_to_columns() -> None:
    codec = LabelCodec(Codec(CATALOG))
    payloads = [encode_single_object(_label(f"e{i}", label=float(i % 2), time_ms=WHEN + i), LABEL_SCHEMA) for i in range(5)]
    batch = codec.decode_batch(payloads, model="credit_risk")
    assert batch.prediction_ids == [f"e{i}" for i in range(5)]
    assert batch.label_times_ms.tolist() == [WHEN + i for i in range(5)]  # exact to the millisecond
    assert batch.labels.tolist() == [0.0, 1.0, 0.0, 1.0, 0.0]
    assert batch.rows.tolist() == [0, 1, 2, 3, 4] and batch.rejections == []


def test_every_unusable_payload_is_rejected_with_its_reason() -> None:
    codec = LabelCodec(Codec(CATALOG))
    prediction_contract = CATALOG.contract("credit_risk")
    good = encode_single_object(_label(), LABEL_SCHEMA)
    payloads = [
        good,
        encode_single_object(_label(model="fraud"), LABEL_SCHEMA),
        encode_single_object(_label(label=float("nan")), LABEL_SCHEMA),
        encode_single_object(_label(event_id=""), LABEL_SCHEMA),
        good[:12],  # cut inside the record
        b"not avro",
        None,  # a tombstone
        # A prediction event on the label topic: a known fingerprint, but not a label's.
        b"\xc3\x01" + prediction_contract.fingerprint.to_bytes(8, "little") + b"\x00" * 20,
        encode_confluent(_label(), LABEL_SCHEMA, 999),  # no registry client
    ]
    batch = codec.decode_batch(payloads, model="credit_risk")  # type: ignore[arg-type]
    reasons = {r.index: r.reason for r in batch.rejections}
    assert reasons == {
        1: RejectReason.MODEL_MISMATCH, 2: RejectReason.NOT_FINITE, 3: RejectReason.EMPTY, 4: RejectReason.CORRUPT,
        5: RejectReason.BAD_MAGIC, 6: RejectReason.EMPTY, 7: RejectReason.UNKNOWN_FINGERPRINT, 8: RejectReason.UNKNOWN_SCHEMA_ID,
    }
    assert batch.rows.tolist() == [0]
    assert len(batch.rows) + len(batch.rejections) == batch.n_input == len(payloads)
    assert all(r.detail for r in batch.rejections)


def test_confluent_framing_through_a_registry_promotes_an_older_int_label() -> None:
    registry = in_memory_registry()
    older = copy.deepcopy(LABEL_SCHEMA)
    for field in older["fields"]:
        if field["name"] == "label":
            field["type"] = "int"
    older_id = registry.register_schema("labels.credit_risk-value", Schema(json.dumps(older), "AVRO"))
    current_id = registry.register_schema("other-value", Schema(json.dumps(LABEL_SCHEMA), "AVRO"))
    prediction_id = registry.register_schema("predictions-value", Schema(json.dumps(CATALOG.contract("credit_risk").schema_json), "AVRO"))
    codec = LabelCodec(Codec(CATALOG, registry_client=registry))
    batch = codec.decode_batch([
        encode_confluent({**_label(), "label": 1}, older, older_id),
        encode_confluent(_label(event_id="e2", label=0.25), LABEL_SCHEMA, current_id),
        encode_confluent(_label(), LABEL_SCHEMA, prediction_id),  # a registry id of another record
    ], model="credit_risk")
    assert batch.prediction_ids == ["e1", "e2"] and batch.labels.tolist() == [1.0, 0.25]
    assert [r.reason for r in batch.rejections] == [RejectReason.UNKNOWN_SCHEMA_ID]


def test_docstring_examples_run() -> None:
    result = doctest.testmod(labels_module)
    assert result.attempted > 0 and result.failed == 0


def test_an_empty_batch() -> None:
    batch = LabelCodec(Codec(CATALOG)).decode_batch([], model="credit_risk")
    assert batch.n_input == 0 and batch.prediction_ids == [] and batch.labels.size == 0
    with pytest.raises(ValueError, match="no contract"):
        LabelCodec(Codec(CATALOG)).decode_batch([b""], model="nobody")
