"""Bad input on the wire: every class of bad event is dead-lettered with its reason; the worker keeps going.

Valid events, then one block of each kind of bad input, then valid events again, all on one topic.
The worker (a real ``driftline worker`` process on the real broker and database) must accept
exactly the valid events, dead-letter every bad one with its original bytes and the expected reason
in its headers, and raise one schema-change alert per changed writer schema — not one per event.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import sqlalchemy as sa
from worker_harness import MODEL, Worker, checkpoint, isolated_database, produce, read_topic, unique

from driftline.schemas.codec import encode_single_object
from driftline.schemas.contract_catalog import Catalog
from driftline.sinks.database import create_database_engine
from driftline.stream.demo.generator import SyntheticStream

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
MAX_MESSAGE_BYTES = 20_000
BLOCK = 25  # events of each bad kind


def _type_changed_schema(contract_schema: dict[str, object]) -> dict[str, object]:
    """The contract with ``annual_income`` sent as a string — a producer's silent type change."""
    schema = json.loads(json.dumps(contract_schema))
    for field in schema["fields"]:  # type: ignore[union-attr]
        if field["name"] == "annual_income":
            field["type"] = "string"
            field.pop("driftline", None)
    return schema


def test_every_class_of_bad_input_is_dead_lettered_with_its_reason(kafka_bootstrap: str, database_url: str, tmp_path: Path) -> None:
    # The producers' writer schemas are registered in the worker's catalog (single-object encoding
    # resolves writer schemas by fingerprint from it): the renamed one ships with driftline, the
    # type-changed one is added here.
    schemas = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, schemas, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    catalog = Catalog.load(SCHEMAS)
    contract = catalog.contract(MODEL)
    type_changed = _type_changed_schema(contract.schema_json)
    (schemas / "catalog" / "credit_risk_v3_income_as_string.avsc").write_text(json.dumps(type_changed))
    renamed = json.loads((SCHEMAS / "catalog" / "credit_risk_v2_renamed.avsc").read_text())

    stream = SyntheticStream(contract, seed=5, events_per_second=50)
    columns = stream.columns(6_000)
    records = stream.records(columns, stream.event_times(6_000))
    before, bad_pool, after = records[:3_000], records[3_000:4_000], records[4_000:]

    def variant(i: int, **changes: object) -> dict[str, object]:
        record = dict(bad_pool[i])
        record.update(changes)
        return record

    def renamed_record(i: int) -> dict[str, object]:
        record = dict(bad_pool[i])
        record["dti_ratio"] = record.pop("debt_to_income")
        return record

    valid = encode_single_object(before[0], contract.schema_json)
    bad: list[tuple[str, bytes]] = []
    for i in range(BLOCK):
        bad += [
            ("bad_magic", b"\xff\xfe not avro at all " + bytes([i])),
            ("empty", b""),
            ("truncated", valid[: 5 + i]),
            ("corrupt", valid[:10] + b"\xff" * 40),
            ("unknown_schema_id", b"\x00\x00\x00\x30\x39" + valid[10:]),  # Confluent id 12345, no registry
            ("unknown_fingerprint", b"\xc3\x01" + bytes(range(i, i + 8)) + valid[10:]),
            ("missing_field", encode_single_object(renamed_record(i), renamed)),
            ("type_change", encode_single_object(variant(i, annual_income=str(bad_pool[i]["annual_income"])), type_changed)),
            ("not_finite", encode_single_object(variant(i, annual_income=math.nan), contract.schema_json)),
            ("out_of_range", encode_single_object(variant(i, debt_to_income=3.5), contract.schema_json)),
            ("unseen_category", encode_single_object(variant(i, region="atlantis"), contract.schema_json)),
            ("unknown_model", encode_single_object(variant(i, model_name="fraud_v9"), contract.schema_json)),
            ("oversized", encode_single_object(variant(i, event_id="x" * MAX_MESSAGE_BYTES), contract.schema_json)),
        ]
    payloads = (
        [encode_single_object(r, contract.schema_json) for r in before]
        + [payload for _, payload in bad]
        + [encode_single_object(r, contract.schema_json) for r in after]
    )
    expected_reason = {len(before) + i: reason for i, (reason, _) in enumerate(bad)}
    n_valid = len(before) + len(after)

    prefix = unique("bad") + "."
    topic, deadletter = prefix + MODEL, prefix + "deadletter"
    produce(kafka_bootstrap, topic, payloads)

    with isolated_database(database_url) as url:
        worker = Worker(bootstrap=kafka_bootstrap, database_url=url, prefix=prefix, deadletter=deadletter, group="bad",
                        log=tmp_path / "worker.log", stop_at_end=True,
                        extra=["--schemas", str(schemas), "--max-message-bytes", str(MAX_MESSAGE_BYTES)])
        assert worker.wait(300) == 0, worker.log_tail()
        assert "\x1b" not in worker.log_path.read_text(errors="replace"), "a log file must carry no terminal escape codes"

        counts = checkpoint(url, "bad", topic)
        assert counts is not None
        assert counts["consumed"] == len(payloads)
        assert counts["accepted"] == n_valid, counts  # it kept going: everything valid after the bad block too
        assert counts["dead_lettered"] == len(bad)

        letters = read_topic(kafka_bootstrap, deadletter)
        by_offset = {int(letter.key.rsplit(":", 1)[1]): letter for letter in letters}
        assert len(by_offset) == len(letters) == len(bad)  # one run, no restart: no duplicates either
        assert {offset: letter.headers["driftline.reason"] for offset, letter in by_offset.items()} == expected_reason
        for offset, letter in by_offset.items():
            assert (letter.value or b"") == payloads[offset], f"offset {offset}: the original bytes were not kept"
            assert letter.headers["driftline.source"] == f"{topic}:0:{offset}"
            assert letter.headers["driftline.detail"]
        assert by_offset[len(before) + 6].headers["driftline.field"] == "debt_to_income"  # the missing field is named

        engine = create_database_engine(url)
        try:
            with engine.connect() as connection:
                changes = connection.execute(sa.text("SELECT writer_id, compatible FROM schema_changes")).all()
                alerts = connection.execute(
                    sa.text("SELECT message FROM alerts WHERE kind = 'schema_change' ORDER BY event_time")
                ).scalars().all()
        finally:
            engine.dispose()
        # Two changed writer schemas, BLOCK events each: one record and one alert per writer schema.
        assert len(changes) == 2 and not any(compatible for _, compatible in changes), changes
        assert len(alerts) == 2, alerts
        assert any("dti_ratio" in message or "debt_to_income" in message for message in alerts), alerts
        assert any("annual_income" in message for message in alerts), alerts
