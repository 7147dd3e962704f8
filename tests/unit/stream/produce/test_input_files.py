"""``driftline produce``'s inputs: files mapped to the contract, converted, encoded and decoded back; bad input refused."""

from __future__ import annotations

import argparse
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from decoded_events import assert_decodes_to

from driftline.schemas import Catalog, Codec, Contract, DecodedBatch, RejectReason, avro_types, in_memory_registry
from driftline.schemas.columnar_encoder import BatchEncoder
from driftline.stream.cli import main
from driftline.stream.cli.produce import register, run
from driftline.stream.demo.demo import demo_episodes, demo_messages
from driftline.stream.demo.generator import SyntheticStream
from driftline.stream.demo.sources import synthetic_batches
from driftline.stream.produce.input_files import InputError, RowMapper, read_file

ROWS = 120


def _records(contract: Contract, rows: int = ROWS, seed: int = 4) -> list[dict[str, Any]]:
    stream = SyntheticStream(contract, seed=seed)
    return stream.records(stream.columns(rows), stream.event_times(rows), model_version="2026.11")


def _arrow_table(contract: Contract, records: list[dict[str, Any]]) -> pa.Table:
    """The records with the Arrow types a model server's Parquet export would have."""
    types = {"int": pa.int32(), "long": pa.int64(), "double": pa.float64(), "string": pa.string()}
    fields = [pa.field(s.name, pa.int64() if s.kind == "timestamp" else types[s.avro_type]) for s in contract.fields]
    return pa.Table.from_pylist(records, schema=pa.schema(fields))


def _decode(catalog: Catalog, contract: Contract, columns: dict[str, Any]) -> DecodedBatch:
    header = b"\xc3\x01" + avro_types.fingerprint_bytes(contract.fingerprint)
    payloads = BatchEncoder(contract.schema_json, header).encode(columns)
    return Codec(catalog).decode_batch(payloads, contract.model)


def _read_all(path: Path, contract: Contract, **options: Any) -> tuple[dict[str, pa.Array], int, list[Any]]:
    mapper = RowMapper(contract, model_version=options.pop("model_version", None), unit="line" if path.suffix == ".jsonl" else "row")
    batches = list(read_file(path, mapper, batch_rows=options.pop("batch_rows", 50)))
    columns = {name: pa.concat_arrays([b.columns[name] for b in batches]) for name in batches[0].columns}
    return columns, sum(b.invalid_rows for b in batches), [p for b in batches for p in b.problems]


def _write(path: Path, contract: Contract, records: list[dict[str, Any]]) -> Path:
    if path.suffix == ".parquet":
        pq.write_table(_arrow_table(contract, records), path)
    elif path.suffix == ".csv":
        pacsv.write_csv(_arrow_table(contract, records), path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_files_round_trip_through_reader_encoder_and_codec(catalog: Catalog, contract: Contract, tmp_path: Path, suffix: str) -> None:
    records = _records(contract)
    assert any(r["months_since_last_delinquency"] is None for r in records)  # nulls are part of the round trip
    columns, invalid, _ = _read_all(_write(tmp_path / f"events{suffix}", contract, records), contract)
    assert invalid == 0
    assert_decodes_to(_decode(catalog, contract, columns), contract, records)


def test_parquet_types_are_converted_to_what_the_schema_wants(catalog: Catalog, contract: Contract, tmp_path: Path) -> None:
    records = _records(contract, rows=40)
    table = _arrow_table(contract, records).drop_columns(["model_name", "model_version"])
    # pandas-style exports: event time as a timestamp column, int fields as whole floats or int64.
    table = table.set_column(
        table.schema.get_field_index("event_time"), "event_time",
        pa.array([datetime.fromtimestamp(r["event_time"] / 1000, UTC) for r in records], pa.timestamp("us", tz="UTC")),
    )
    table = table.set_column(table.schema.get_field_index("age"), "age", pa.array([float(r["age"]) for r in records]))
    table = table.set_column(table.schema.get_field_index("credit_score"), "credit_score", table.column("credit_score").cast(pa.int64()))
    table = table.set_column(table.schema.get_field_index("channel"), "channel", table.column("channel").dictionary_encode())
    pq.write_table(table, tmp_path / "typed.parquet")
    columns, invalid, _ = _read_all(tmp_path / "typed.parquet", contract, model_version="2026.11")
    assert invalid == 0
    # model_name is filled from the contract, model_version from --model-version
    assert_decodes_to(_decode(catalog, contract, columns), contract, records)


def test_csv_and_json_take_iso_times(catalog: Catalog, contract: Contract, tmp_path: Path) -> None:
    records = _records(contract, rows=30)
    iso = [r | {"event_time": datetime.fromtimestamp(r["event_time"] / 1000, UTC).isoformat(timespec="milliseconds")} for r in records]
    lines = tmp_path / "iso.jsonl"
    lines.write_text("".join(json.dumps(r) + "\n" for r in iso), encoding="utf-8")
    columns, invalid, _ = _read_all(lines, contract)
    assert invalid == 0
    assert_decodes_to(_decode(catalog, contract, columns), contract, records)
    table = pa.Table.from_pylist(iso)
    pacsv.write_csv(table.set_column(table.schema.get_field_index("event_time"), "event_time",
                                     pa.array([r["event_time"].replace("+00:00", "") for r in iso])), tmp_path / "iso.csv")
    columns, invalid, _ = _read_all(tmp_path / "iso.csv", contract)  # naive times are UTC
    assert invalid == 0
    assert_decodes_to(_decode(catalog, contract, columns), contract, records)


def test_bad_cells_are_counted_and_named(contract: Contract, tmp_path: Path) -> None:
    records = _records(contract, rows=10)
    path = _write(tmp_path / "bad.csv", contract, records)
    text = path.read_text().splitlines()
    header = text[0].split(",")
    row = text[3].split(",")  # data row 3
    row[header.index('"age"')] = "forty"
    text[3] = ",".join(row)
    row = text[7].split(",")  # data row 7
    row[header.index('"annual_income"')] = ""
    text[7] = ",".join(row)
    path.write_text("\n".join(text) + "\n")
    columns, invalid, problems = _read_all(path, contract)
    assert invalid == 2 and len(columns["event_id"]) == 8
    assert [str(p) for p in problems] == [
        "row 3, column 'age': 'forty' is not a number",
        "row 7, column 'annual_income': missing or null, and the field is not nullable",
    ]


def test_json_lines_report_their_line_numbers(contract: Contract, tmp_path: Path) -> None:
    records = _records(contract, rows=6)
    lines = [json.dumps(r) for r in records]
    lines[1] = json.dumps(records[1] | {"age": "41"})  # text is not a number in JSON
    lines[2] = "{not json"
    lines[4] = json.dumps(records[4] | {"loan_amount": 1.5, "credit_score": 700.5})
    lines.insert(3, "")
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    columns, invalid, problems = _read_all(path, contract)
    assert invalid == 3 and columns["event_id"].to_pylist() == [records[i]["event_id"] for i in (0, 3, 5)]
    assert [str(p) for p in problems] == [
        "line 2, column 'age': '41' is text, the field is int",
        "line 3: not valid JSON: Expecting property name enclosed in double quotes at column 2",
        "line 6, column 'credit_score': 700.5 is not a whole number (int)",
    ]


def test_an_infinite_time_among_iso_times_is_a_bad_row_not_a_crash(contract: Contract, tmp_path: Path) -> None:
    records = _records(contract, rows=3)
    lines = [json.dumps(r | {"event_time": "2026-11-23T12:00:00+00:00"}) for r in records]
    lines[1] = json.dumps(records[1] | {"event_time": float("inf")})  # Python's json writes and reads Infinity
    path = tmp_path / "infinite.jsonl"
    path.write_text("\n".join(lines) + "\n")
    columns, invalid, problems = _read_all(path, contract)
    assert invalid == 1 and len(columns["event_id"]) == 2
    assert [str(p).split(":")[0] for p in problems] == ["line 2, column 'event_time'"]


def test_a_missing_required_column_is_a_file_error(contract: Contract, tmp_path: Path) -> None:
    table = _arrow_table(contract, _records(contract, rows=5)).drop_columns(["debt_to_income"])
    pq.write_table(table, tmp_path / "short.parquet")
    with pytest.raises(InputError, match="no column 'debt_to_income', which contract credit_risk v1 requires"):
        _read_all(tmp_path / "short.parquet", contract)


def test_the_synthetic_drift_stream_is_the_demos_stream(catalog: Catalog, contract: Contract) -> None:
    events = 10_000
    stream = SyntheticStream(contract, seed=7)
    registry = in_memory_registry()
    demo_bodies = [m.value[5:] for batch in demo_messages(contract, stream, events, demo_episodes(events), registry) for m in batch]
    bodies = []
    for batch in synthetic_batches(contract, events, seed=7, drift=True):
        schema = batch.writer_schema if batch.writer_schema is not None else contract.schema_json
        bodies.extend(BatchEncoder(schema).encode(batch.columns))
    assert bodies == demo_bodies
    header = b"\xc3\x01" + avro_types.fingerprint_bytes(contract.fingerprint)
    renamed = next(b.writer_schema for b in synthetic_batches(contract, events, drift=True) if b.writer_schema is not None)
    renamed_header = b"\xc3\x01" + avro_types.fingerprint_bytes(avro_types.fingerprint(avro_types.canonical_form(renamed)))
    payloads = [
        (renamed_header if 5_000 <= i < 5_800 else header) + body for i, body in enumerate(bodies)
    ]
    decoded = Codec(catalog).decode_batch(payloads, "credit_risk")  # the bundled catalog knows the renamed schema
    assert {r.index for r in decoded.rejections if r.reason == RejectReason.MISSING_FIELD} == set(range(5_000, 5_800))


# -- the command's argument and input errors (exit code 2, nothing sent) -------------------------------------


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="driftline")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["produce", *argv])


def _run(argv: tuple[str, ...]) -> int:
    """``driftline produce ARGV``'s exit code, through the command line's own error handling."""
    return main(["produce", *argv])


def _closed_bootstrap() -> str:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


@pytest.fixture()
def events_file(contract: Contract, tmp_path: Path) -> Path:
    return _write(tmp_path / "events.jsonl", contract, _records(contract, rows=20))


def test_register_wires_run_as_the_handler(events_file: Path) -> None:
    assert _args("--model", "credit_risk", "--input", str(events_file)).handler is run


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "fraud"], "no contract for model 'fraud'; known models and feature sets: credit_features, credit_risk"),
        (["--model", "credit_risk", "--drift"], "--drift applies to --synthetic"),
        (["--model", "credit_risk", "--wire-format", "confluent"], "--wire-format confluent needs a Schema Registry"),
        (["--model", "credit_risk", "--registry-mode", "use-latest"], "--registry-mode applies to --wire-format confluent"),
        (["--model", "credit_risk", "--wire-format", "confluent", "--schema-registry", "http://u:p@127.0.0.1:1",
          "--registry-mode", "auto-register"], "must not carry credentials; set DRIFTLINE_SCHEMA_REGISTRY_BASIC_AUTH"),
        (["--model", "credit_risk", "--wire-format", "confluent", "--schema-registry", "mock://", "--registry-mode", "use-latest",
          "--writer-schema", "schemas/catalog/credit_risk_v1_1_segment.avsc"], "--writer-schema and --registry-mode use-latest"),
        (["--model", "credit_risk", "--writer-schema", "no/such/schema.avsc"], "--writer-schema no/such/schema.avsc"),
    ],
)
def test_bad_arguments_exit_with_2(
    events_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str], message: str
) -> None:
    monkeypatch.delenv("DRIFTLINE_SCHEMA_REGISTRY_URL", raising=False)  # `make test` exports the local registry's
    assert _run((*argv, "--input", str(events_file), "--bootstrap", _closed_bootstrap())) == 2
    assert message in capsys.readouterr().err


def test_unreadable_files_exit_with_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "junk.parquet").write_bytes(b"this is not parquet at all")
    (tmp_path / "events.xlsx").write_bytes(b"")
    (tmp_path / "latin.jsonl").write_bytes(b'{"event_id": "caf\xe9"}\n')
    cases = {
        "junk.parquet": "junk.parquet: cannot read it as parquet",
        "missing.csv": "missing.csv: no such file",
        "events.xlsx": "cannot tell the format from the extension '.xlsx'",
        "latin.jsonl": "latin.jsonl: cannot read it as jsonl",
    }
    for name, message in cases.items():
        assert _run(("--model", "credit_risk", "--input", str(tmp_path / name), "--bootstrap", _closed_bootstrap())) == 2, name
        assert message in capsys.readouterr().err


def test_a_bad_row_aborts_before_anything_is_sent(contract: Contract, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = _records(contract, rows=30)
    records[17]["region"] = None
    path = _write(tmp_path / "events.parquet", contract, records)
    # The bootstrap answers nothing: the file is checked before Kafka is contacted at all.
    assert _run(("--model", "credit_risk", "--input", str(path), "--bootstrap", _closed_bootstrap())) == 2
    err = capsys.readouterr().err
    assert "row 18, column 'region': missing or null, and the field is not nullable (nothing was sent" in err


def test_a_file_without_a_required_column_exits_with_2(contract: Contract, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = _arrow_table(contract, _records(contract, rows=5)).drop_columns(["event_id"])
    pacsv.write_csv(table, tmp_path / "anonymous.csv")
    assert _run(("--model", "credit_risk", "--input", str(tmp_path / "anonymous.csv"), "--bootstrap", _closed_bootstrap())) == 2
    assert "no column 'event_id'" in capsys.readouterr().err


def test_an_unreachable_broker_is_a_delivery_failure(events_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--model", "credit_risk", "--input", str(events_file), "--bootstrap", _closed_bootstrap(), "--delivery-timeout", "2"]
    assert _run(tuple(argv)) == 1
    assert "does not answer" in capsys.readouterr().err


def test_whole_floats_and_nan_survive_csv_text(catalog: Catalog, contract: Contract, tmp_path: Path) -> None:
    records = _records(contract, rows=8)
    records[2]["annual_income"] = math.nan  # legal Avro; the worker rejects it as not finite
    path = _write(tmp_path / "nan.csv", contract, records)
    columns, invalid, _ = _read_all(path, contract)
    assert invalid == 0
    batch = _decode(catalog, contract, columns)
    assert [r.reason for r in batch.rejections] == [RejectReason.NOT_FINITE] and batch.rejections[0].index == 2
    assert np.isnan(batch.values["annual_income"][2])
