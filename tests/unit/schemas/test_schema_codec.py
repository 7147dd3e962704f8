from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fastavro
import numpy as np
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from schema_files import SCHEMAS

from driftline.schemas import (
    Catalog,
    Codec,
    Contract,
    DecodedEvent,
    EncodeError,
    FieldStatus,
    RegistryError,
    Rejection,
    RejectReason,
    encode_confluent,
    encode_single_object,
)
from driftline.schemas.avro_types import strip_logical_types

SUBJECT = "predictions.credit_risk-value"


@dataclass
class Scene:
    """A two-model catalog, a registry, and helpers to produce payloads like producers do."""

    contract: Contract
    catalog: Catalog
    registry: Any
    codec: Codec
    record: Callable[..., dict[str, Any]]
    writer_schema: Callable[..., dict[str, Any]]

    def confluent(self, record: dict[str, Any], schema: Any = None, subject: str = SUBJECT) -> bytes:
        schema = schema if schema is not None else self.contract.schema_json
        schema_id = self.registry.register_schema(subject, Schema(json.dumps(schema), "AVRO"))
        return encode_confluent(record, schema, schema_id)

    def single(self, record: dict[str, Any], schema: Any = None) -> bytes:
        return encode_single_object(record, schema if schema is not None else self.contract)


@pytest.fixture
def scene(contract: Contract, two_models: Catalog, registry: Any, record: Any, writer_schema: Any) -> Scene:
    return Scene(contract, two_models, registry, Codec(two_models, registry_client=registry, max_message_bytes=4096), record, writer_schema)


def _columns_equal(left: np.ndarray, right: np.ndarray) -> bool:
    if left.dtype == object:
        return left.tolist() == right.tolist()
    return bool(np.array_equal(left, right, equal_nan=True))


# -- round trips -------------------------------------------------------------------------------


def test_both_wire_formats_decode_to_the_same_columns(scene: Scene) -> None:
    records = [
        scene.record(event_id=f"e{i}", annual_income=40_000.0 + i, months_since_last_delinquency=None if i % 2 else 7.0,
                     employment_type=None if i == 3 else "retired", event_time=1_767_225_600_000 + i)
        for i in range(6)
    ]
    confluent = scene.codec.decode_batch([scene.confluent(r) for r in records], model="credit_risk")
    single = scene.codec.decode_batch([scene.single(r) for r in records], model="credit_risk")
    for batch in (confluent, single):
        assert batch.model == "credit_risk" and batch.n_input == 6 and batch.n_accepted == 6 and batch.rejections == []
        assert batch.rows.tolist() == list(range(6))
        assert batch.event_id.tolist() == [r["event_id"] for r in records]
        assert batch.event_time_ms.dtype == np.int64 and batch.event_time_ms.tolist() == [r["event_time"] for r in records]
        assert batch.model_version.tolist() == ["v1"] * 6
        assert batch.values["annual_income"].dtype == np.float64
        assert batch.values["annual_income"].tolist() == [r["annual_income"] for r in records]
        assert batch.values["credit_score"].tolist() == [700.0] * 6
        months = batch.values["months_since_last_delinquency"]
        assert np.isnan(months[1::2]).all() and months[0::2].tolist() == [7.0] * 3
        assert batch.status["months_since_last_delinquency"].tolist() == [0, 1] * 3
        assert batch.values["employment_type"].tolist() == ["retired"] * 3 + [None] + ["retired"] * 2
        assert batch.status["employment_type"][3] == FieldStatus.NULL
        assert all(s.dtype == np.int8 for s in batch.status.values())
        assert set(batch.values) == {f.name for f in scene.contract.monitored_fields}
    for name in confluent.values:
        assert _columns_equal(confluent.values[name], single.values[name]), name


def test_wire_headers_follow_the_confluent_and_single_object_layouts(scene: Scene) -> None:
    body = io.BytesIO()
    fastavro.schemaless_writer(body, scene.contract.parsed_schema, scene.record())
    confluent = encode_confluent(scene.record(), scene.contract.schema_json, 258)
    assert confluent == b"\x00\x00\x00\x01\x02" + body.getvalue()
    single = encode_single_object(scene.record(), scene.contract.schema_json)
    assert single == b"\xc3\x01" + scene.contract.fingerprint.to_bytes(8, "little") + body.getvalue()


def test_decode_returns_an_event_or_its_rejection(scene: Scene) -> None:
    event = scene.codec.decode(scene.single(scene.record(channel="partner_api")))
    assert isinstance(event, DecodedEvent)
    assert (event.model, event.contract_version, event.event_id, event.model_version) == ("credit_risk", 1, "evt-000000001", "v1")
    assert event.writer_id == f"0x{scene.contract.fingerprint:016x}"
    assert event.values["debt_to_income"] == 0.22 and event.values["home_ownership"] == "MORTGAGE"
    assert event.values["months_since_last_delinquency"] is None
    assert event.status["channel"] == FieldStatus.UNSEEN_CATEGORY  # open set: counted, accepted
    rejected = scene.codec.decode(scene.single(scene.record(debt_to_income=1.7)))
    assert isinstance(rejected, Rejection) and rejected.reason == RejectReason.OUT_OF_RANGE


# -- every rejection reason ------------------------------------------------------------------

Case = tuple[Callable[[Scene], Any], str | None, RejectReason, str | None, str]


def _renamed(s: Scene) -> bytes:
    record = s.record()
    record["dti_ratio"] = record.pop("debt_to_income")
    return s.confluent(record, json.loads((SCHEMAS / "catalog" / "credit_risk_v2_renamed.avsc").read_text()))


def _unregistered_writer(s: Scene) -> bytes:
    schema = s.writer_schema(add=[{"name": "branch_code", "type": "string", "default": ""}])
    return encode_single_object(s.record(branch_code="B17"), schema)


CASES: dict[str, Case] = {
    "empty": (lambda s: b"", None, RejectReason.EMPTY, None, "empty payload"),
    "tombstone": (lambda s: None, None, RejectReason.EMPTY, None, "tombstone"),
    "oversized": (lambda s: b"\x00" + bytes(5000), None, RejectReason.OVERSIZED, None, "5001 bytes, more than max_message_bytes=4096"),
    "json instead of avro": (lambda s: json.dumps(s.record()).encode(), None, RejectReason.BAD_MAGIC, None, "looks like JSON"),
    "short confluent header": (lambda s: b"\x00\x00\x01", None, RejectReason.TRUNCATED, None, "needs a 5-byte header"),
    "cut in the record": (lambda s: s.single(s.record())[:-5], None, RejectReason.TRUNCATED, "prediction_score",
                          "ends while reading field 'prediction_score'"),
    "trailing garbage": (lambda s: s.single(s.record()) + b"\x02\x04", None, RejectReason.CORRUPT, None, "2 byte(s) left over"),
    "invalid utf-8": (lambda s: s.single(s.record(region="wést")).replace("wést".encode(), b"w\xff\xfest"), None,
                      RejectReason.CORRUPT, "region", "not valid UTF-8"),
    "unknown fingerprint": (_unregistered_writer, None, RejectReason.UNKNOWN_FINGERPRINT, None, "no writer schema with fingerprint 0x"),
    "unknown schema id": (lambda s: encode_confluent(s.record(), s.contract, 4242), None, RejectReason.UNKNOWN_SCHEMA_ID, None,
                          "no schema with id 4242"),
    "record of no contract": (lambda s: s.confluent({"id": 1}, {"type": "record", "name": "acme.Click", "fields": [{"name": "id", "type": "int"}]},
                                                   "clicks-value"),
                              None, RejectReason.UNKNOWN_MODEL, None, "record acme.Click, which no contract reads"),
    "event of an unknown model": (lambda s: s.single(s.record(model_name="churn")), None, RejectReason.UNKNOWN_MODEL, "model_name",
                                  "model_name='churn' has no contract"),
    "event claims another model": (lambda s: s.single(s.record(model_name="fraud")), None, RejectReason.MODEL_MISMATCH, "model_name",
                                   "event says model_name='fraud'"),
    "event on another model's topic": (lambda s: s.single(s.record()), "fraud", RejectReason.MODEL_MISMATCH, None,
                                       "a credit_risk event (driftline.models.credit_risk.Prediction, writer schema 0x"),
    "renamed field": (_renamed, None, RejectReason.MISSING_FIELD, "debt_to_income",
                      "has no field 'debt_to_income' (new field 'dti_ratio'); contract credit_risk v1 requires it"),
    "string income": (lambda s: s.confluent(s.record(annual_income="54k"), s.writer_schema({"annual_income": "string"})), None,
                      RejectReason.TYPE_CHANGE, "annual_income", "declares 'annual_income' as string; contract credit_risk v1 expects double"),
    "string in a union": (lambda s: s.confluent(s.record(annual_income="54k"), s.writer_schema({"annual_income": ["null", "double", "string"]})),
                          None, RejectReason.WRONG_TYPE, "annual_income", "annual_income='54k' is a str; contract credit_risk v1 expects double"),
    "NaN income": (lambda s: s.single(s.record(annual_income=math.nan)), None, RejectReason.NOT_FINITE, "annual_income",
                   "annual_income=nan is not finite"),
    "infinite score": (lambda s: s.single(s.record(prediction_score=math.inf)), None, RejectReason.NOT_FINITE, "prediction_score",
                       "prediction_score=inf"),
    "ratio above one": (lambda s: s.single(s.record(debt_to_income=1.7)), None, RejectReason.OUT_OF_RANGE, "debt_to_income",
                        "debt_to_income=1.7 outside [0, 1]"),
    "negative age": (lambda s: s.single(s.record(age=-3)), None, RejectReason.OUT_OF_RANGE, "age", "age=-3 outside [18, 120]"),
    "unseen closed category": (lambda s: s.single(s.record(home_ownership="CONDO")), None, RejectReason.UNSEEN_CATEGORY, "home_ownership",
                               "home_ownership='CONDO' is not a known category (RENT, OWN, MORTGAGE, OTHER)"),
    "null in a non-nullable field": (lambda s: s.confluent(s.record(debt_to_income=None), s.writer_schema({"debt_to_income": ["null", "double"]})),
                                     None, RejectReason.NULL_NOT_ALLOWED, "debt_to_income",
                                     "debt_to_income is null; contract credit_risk v1 declares it non-nullable"),
}


def test_every_reject_reason_has_a_realistic_case() -> None:
    # ENGINE_FAILURE is the partition runner's (a decoded event the engine failed on), never the codec's.
    assert {case[2] for case in CASES.values()} == set(RejectReason) - {RejectReason.ENGINE_FAILURE}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_rejected_with_its_reason_and_a_readable_detail(scene: Scene, name: str) -> None:
    build, model, reason, field, fragment = CASES[name]
    good = scene.single(scene.record())
    batch = scene.codec.decode_batch([good, build(scene)], model=model or "credit_risk")
    (rejection,) = [r for r in batch.rejections if r.index == 1]
    assert rejection.reason == reason, rejection
    assert rejection.field == field
    assert fragment in rejection.detail, rejection.detail
    if model is None:
        assert batch.accepted.tolist()[:1] == [True] and batch.rows[0] == 0
    assert batch.n_accepted + len(batch.rejections) == 2


def test_a_row_with_several_violations_names_the_first_and_lists_the_others(scene: Scene) -> None:
    batch = scene.codec.decode_batch([scene.single(scene.record(age=150, debt_to_income=2.0, channel="kiosk"))])
    (rejection,) = batch.rejections
    assert rejection.reason == RejectReason.OUT_OF_RANGE and rejection.field == "age"
    assert rejection.detail == "age=150 outside [18, 120] (also: debt_to_income out_of_range, channel unseen_category)"


def test_codec_without_registry_rejects_confluent_frames(contract: Contract, scene: Scene) -> None:
    codec = Codec(Catalog([contract]))
    result = codec.decode(scene.confluent(scene.record()))
    assert isinstance(result, Rejection) and result.reason == RejectReason.UNKNOWN_SCHEMA_ID
    assert "no Schema Registry client" in result.detail


def test_an_unreachable_registry_raises_instead_of_dead_lettering_good_events(contract: Contract, scene: Scene) -> None:
    client = SchemaRegistryClient({"url": "http://127.0.0.1:9", "max.retries": 0})
    codec = Codec(Catalog([contract]), registry_client=client)
    with pytest.raises(RegistryError, match="lookup of schema id 7 failed"):
        codec.decode_batch([encode_confluent(scene.record(), contract, 7)])


def test_a_batch_for_a_model_without_contract_rejects_everything(scene: Scene) -> None:
    batch = scene.codec.decode_batch([scene.single(scene.record()), b""], model="churn")
    assert [r.reason for r in batch.rejections] == [RejectReason.UNKNOWN_MODEL] * 2
    assert "no contract" in batch.rejections[0].detail and batch.values == {} and len(batch.rows) == 0


# -- policies, reconciliation, ordering --------------------------------------------------------


def test_count_policy_accepts_and_marks_reject_policy_dead_letters(scene: Scene) -> None:
    payloads = [
        scene.single(scene.record(channel="partner_api")),
        scene.single(scene.record(region="atlantis")),
        scene.single(scene.record(months_since_last_delinquency=None, employment_type=None)),
    ]
    batch = scene.codec.decode_batch(payloads)
    assert batch.accepted.tolist() == [True, False, True]
    assert batch.rows.tolist() == [0, 1, 2]  # contract-rejected rows stay in the columns
    assert batch.status["channel"].tolist() == [FieldStatus.UNSEEN_CATEGORY, 0, 0]
    assert batch.status["region"].tolist() == [0, FieldStatus.UNSEEN_CATEGORY, 0]
    assert batch.status["employment_type"].tolist() == [0, 0, FieldStatus.NULL]
    assert [r.index for r in batch.rejections] == [1]


def test_counts_reconcile_and_rows_keep_arrival_order_across_writer_schemas(scene: Scene) -> None:
    segment = json.loads((SCHEMAS / "catalog" / "credit_risk_v1_1_segment.avsc").read_text())
    promoted = scene.writer_schema({"credit_score": "int", "annual_income": "int"})
    payloads: list[Any] = []
    expected_ids = []
    for i in range(30):
        kind = i % 5
        record = scene.record(event_id=f"e{i}", annual_income=40_000 + i)
        if kind == 0:
            payloads.append(scene.single(record))
        elif kind == 1:
            payloads.append(scene.confluent(record))
        elif kind == 2:
            payloads.append(encode_single_object({**record, "customer_segment": "gold"}, segment))
        elif kind == 3:
            payloads.append(scene.confluent(record, promoted))
        else:
            payloads.append([b"", b"\x07junk", scene.single(scene.record(age=7))][i % 3])
            continue
        expected_ids.append(f"e{i}")
    batch = scene.codec.decode_batch(payloads)
    assert batch.n_accepted + len(batch.rejections) == batch.n_input == 30
    accepted_ids = batch.event_id[batch.accepted].tolist()
    assert accepted_ids == expected_ids
    assert np.all(np.diff(batch.rows) > 0)
    assert batch.values["annual_income"][batch.accepted].tolist() == [40_000.0 + int(e[1:]) for e in expected_ids]
    assert [r.index for r in batch.rejections] == sorted(r.index for r in batch.rejections)


def test_empty_batch_has_typed_empty_columns(scene: Scene) -> None:
    batch = scene.codec.decode_batch([], model="credit_risk")
    assert batch.n_input == 0 and batch.rows.dtype == np.int64 and batch.accepted.dtype == bool
    assert batch.values["annual_income"].dtype == np.float64 and batch.values["region"].dtype == object
    assert batch.status["region"].dtype == np.int8


# -- schema changes ----------------------------------------------------------------------------


def test_schema_change_is_reported_once_per_writer_schema(scene: Scene) -> None:
    first = scene.codec.decode_batch([_renamed(scene), _renamed(scene)])
    second = scene.codec.decode_batch([_renamed(scene)])
    (change,) = first.schema_changes
    assert second.schema_changes == []
    assert change.model == "credit_risk" and not change.compatible
    assert change.diff.missing_fields == ("debt_to_income",) and change.diff.new_fields == ("dti_ratio",)
    assert [r.reason for r in first.rejections + second.rejections] == [RejectReason.MISSING_FIELD] * 3
    # the same writer schema under another subject (another registry id), and single-object encoded
    record = scene.record()
    record["dti_ratio"] = record.pop("debt_to_income")
    renamed = json.loads((SCHEMAS / "catalog" / "credit_risk_v2_renamed.avsc").read_text())
    third = scene.codec.decode_batch([scene.confluent(record, renamed, "other-subject"), encode_single_object(record, renamed)])
    assert third.schema_changes == []
    assert len(scene.codec.schema_changes) == 1


def test_events_of_an_incompatible_writer_are_rejected_but_placed_by_their_identity(scene: Scene) -> None:
    renamed = json.loads((SCHEMAS / "catalog" / "credit_risk_v2_renamed.avsc").read_text())
    no_time = {**renamed, "fields": [dict(f, name="ts") if f["name"] == "event_time" else f for f in renamed["fields"]]}

    def written(schema: dict[str, Any], **overrides: Any) -> bytes:
        record = scene.record(**overrides)
        record["dti_ratio"] = record.pop("debt_to_income")
        if any(f["name"] == "ts" for f in schema["fields"]):
            record["ts"] = record.pop("event_time")
        return scene.confluent(record, schema)

    payloads = [
        scene.confluent(scene.record(event_id="ok", event_time=1_000)),
        written(renamed, event_id="r1", event_time=2_000, model_version="v7"),
        written(renamed, event_id="r2", event_time=3_000)[:-4],  # cut: the writer schema cannot read it either
        written(no_time, event_id="r3", event_time=4_000),  # its event time is what the writer renamed
        written(renamed, event_id="r4", event_time=5_000),
    ]
    batch = scene.codec.decode_batch(payloads)
    # Every event of an incompatible writer is rejected, with the writer schema's reason, once.
    assert [(r.index, r.reason) for r in batch.rejections] == [(i, RejectReason.MISSING_FIELD) for i in (1, 2, 3, 4)]
    assert batch.n_accepted + len(batch.rejections) == batch.n_input == 5
    # Those whose identity the writer schema reads are decoded rows: never accepted, their values unread.
    assert batch.rows.tolist() == [0, 1, 4] and batch.accepted.tolist() == [True, False, False]
    assert batch.event_id.tolist() == ["ok", "r1", "r4"] and batch.event_time_ms.tolist() == [1_000, 2_000, 5_000]
    assert batch.model_version[1] == "v7"
    for spec in scene.contract.monitored_fields:
        assert batch.status[spec.name][1:].tolist() == [FieldStatus.UNREAD] * 2, spec.name
        assert batch.status[spec.name][0] != FieldStatus.UNREAD
        values = batch.values[spec.name][1:]
        assert all(v is None for v in values) if spec.kind == "categorical" else bool(np.isnan(values).all())
    # The changes are dated by their first event's own time where it reads.
    assert sorted((c.diff.new_fields, c.first_event_time_ms) for c in batch.schema_changes) == [
        (("dti_ratio",), 2_000), (("ts", "dti_ratio"), None)]


def test_compatible_writer_is_reported_once_and_its_events_resolved(scene: Scene) -> None:
    segment = json.loads((SCHEMAS / "catalog" / "credit_risk_v1_1_segment.avsc").read_text())
    payloads = [encode_single_object({**scene.record(event_id=f"e{i}"), "customer_segment": "gold"}, segment) for i in range(3)]
    batch = scene.codec.decode_batch(payloads)
    assert batch.n_accepted == 3
    (change,) = batch.schema_changes
    assert change.compatible and change.diff.new_fields == ("customer_segment",)
    assert change.writer_id == f"0x{change.fingerprint:016x}"
    assert scene.codec.decode_batch(payloads).schema_changes == []


def test_resolution_matches_fastavro_schema_resolution(scene: Scene) -> None:
    writer = scene.writer_schema(
        {"annual_income": "int", "employment_years": "float", "region": "bytes", "months_since_last_delinquency": "long"},
        add=[{"name": "partner_id", "type": ["null", "string"], "default": None}],
    )
    writer["fields"] = [f for f in writer["fields"] if f["name"] != "employment_type"]  # contract default: null
    records = [
        {**scene.record(event_id=f"e{i}", annual_income=50_000 + i, employment_years=2.25 + i, region=b"west",
                        months_since_last_delinquency=12 + i), "partner_id": None if i % 2 else "p9"}
        for i in range(4)
    ]
    for record in records:
        record.pop("employment_type")
    payloads = [scene.confluent(r, writer) for r in records]
    batch = scene.codec.decode_batch(payloads)
    assert batch.n_accepted == 4
    reader = fastavro.parse_schema(strip_logical_types(scene.contract.schema_json))
    parsed_writer = fastavro.parse_schema(strip_logical_types(writer))
    for row, payload in enumerate(payloads):
        expected = fastavro.schemaless_reader(io.BytesIO(payload[5:]), parsed_writer, reader)
        assert batch.event_id[row] == expected["event_id"] and batch.event_time_ms[row] == expected["event_time"]
        for spec in scene.contract.monitored_fields:
            got = batch.values[spec.name][row]
            want = expected[spec.name]
            if spec.kind == "categorical":
                assert got == want, spec.name
            else:
                assert (math.isnan(got) and want is None) or got == want, spec.name


def test_writer_schemas_beyond_flat_records_are_decoded_event_by_event(scene: Scene) -> None:
    union = scene.writer_schema(
        {"annual_income": ["null", "double", "string"]}, add=[{"name": "tags", "type": {"type": "array", "items": "string"}, "default": []}]
    )
    payloads = [scene.confluent({**scene.record(annual_income=value), "tags": ["a"]}, union) for value in (61_000.0, 7, "n/a")]
    batch = scene.codec.decode_batch(payloads)
    assert batch.accepted.tolist() == [True, True, False]
    assert batch.values["annual_income"][:2].tolist() == [61_000.0, 7.0]
    assert batch.status["annual_income"].tolist() == [FieldStatus.OK, FieldStatus.OK, FieldStatus.WRONG_TYPE]
    (rejection,) = batch.rejections
    assert rejection.reason == RejectReason.WRONG_TYPE and rejection.index == 2


def test_writer_schemas_with_zero_byte_array_items_are_refused(scene: Scene) -> None:
    schema = scene.writer_schema(add=[{"name": "padding", "type": {"type": "array", "items": "null"}, "default": []}])
    batch = scene.codec.decode_batch([scene.confluent({**scene.record(), "padding": [None]}, schema)])
    (rejection,) = batch.rejections
    assert (rejection.reason, rejection.field) == (RejectReason.TYPE_CHANGE, "padding")
    assert "zero-byte items" in rejection.detail


# -- models ------------------------------------------------------------------------------------


def _fraud_event(fraud: Contract, i: int) -> bytes:
    record = {"event_id": f"f{i}", "event_time": 1_767_225_600_000, "model_name": "fraud", "model_version": "2024-11",
              "amount": 99.5 + i, "score": 0.25}
    return encode_single_object(record, fraud)


def test_decode_batches_splits_a_mixed_stream_by_model(scene: Scene, fraud_contract: Contract) -> None:
    payloads = [scene.single(scene.record(event_id="c0")), _fraud_event(fraud_contract, 0), b"\xffgarbage",
                _fraud_event(fraud_contract, 1), scene.single(scene.record(event_id="c1", debt_to_income=3.0))]
    result = scene.codec.decode_batches(payloads)
    assert set(result.batches) == {"credit_risk", "fraud"}
    credit, fraud = result.batches["credit_risk"], result.batches["fraud"]
    assert (credit.n_input, credit.rows.tolist(), credit.accepted.tolist()) == (2, [0, 4], [True, False])
    assert (fraud.n_input, fraud.rows.tolist(), fraud.values["amount"].tolist()) == (2, [1, 3], [99.5, 100.5])
    assert [r.index for r in result.rejections] == [2] and result.rejections[0].reason == RejectReason.BAD_MAGIC
    total = sum(b.n_accepted + b.n_rejected for b in result.batches.values()) + len(result.rejections)
    assert total == result.n_input == 5


def test_decode_batch_without_model_follows_the_first_event(scene: Scene, fraud_contract: Contract) -> None:
    payloads = [_fraud_event(fraud_contract, 0), scene.single(scene.record()), _fraud_event(fraud_contract, 1),
                scene.single(scene.record(age=7))]
    batch = scene.codec.decode_batch(payloads)
    assert batch.model == "fraud" and batch.rows.tolist() == [0, 2]
    assert [(r.index, r.reason) for r in batch.rejections] == [(1, RejectReason.MODEL_MISMATCH), (3, RejectReason.MODEL_MISMATCH)]
    assert batch.n_accepted + len(batch.rejections) == 4


# -- configuration errors ----------------------------------------------------------------------


def test_configuration_errors_raise(scene: Scene, contract: Contract) -> None:
    with pytest.raises(ValueError, match="max_message_bytes"):
        Codec(Catalog([contract]), max_message_bytes=0)
    with pytest.raises(ValueError, match="catalog"):
        Codec({"credit_risk": contract})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="schema_id"):
        encode_confluent(scene.record(), contract, -1)
    with pytest.raises(EncodeError, match="does not fit schema"):
        encode_single_object(scene.record(annual_income="lots"), contract)
