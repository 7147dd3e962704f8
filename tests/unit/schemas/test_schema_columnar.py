"""The columnar decoder against fastavro, the reference implementation of Avro binary decoding."""

from __future__ import annotations

import io
import math
from typing import Any

import fastavro
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftline.schemas import Catalog
from driftline.schemas.avro_types import strip_logical_types
from driftline.schemas.columnar import PADDING, FlatDecoder, RecordDecoder, flat_layout

CONTRACT = Catalog.load().contract("credit_risk")
# A writer schema using every type the columnar decoder handles.
ALL_TYPES = fastavro.parse_schema({
    "type": "record", "name": "AllTypes", "fields": [
        {"name": "flag", "type": "boolean"},
        {"name": "small", "type": "int"},
        {"name": "big", "type": "long"},
        {"name": "ratio", "type": "float"},
        {"name": "amount", "type": ["null", "double"]},
        {"name": "label", "type": ["string", "null"]},
        {"name": "blob", "type": "bytes"},
        {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN", "BLUE"]}},
        {"name": "maybe_color", "type": ["null", "Color"]},
        {"name": "nothing", "type": "null"},
        {"name": "single_union", "type": ["long"]},
    ],
})
ALL_TYPES_RECORD = st.fixed_dictionaries({
    "flag": st.booleans(),
    "small": st.integers(-(2**31), 2**31 - 1),
    "big": st.integers(-(2**63), 2**63 - 1),
    "ratio": st.floats(width=32, allow_nan=False),
    "amount": st.none() | st.floats(allow_nan=False),
    "label": st.none() | st.text(max_size=20),
    "blob": st.binary(max_size=20),
    "color": st.sampled_from(["RED", "GREEN", "BLUE"]),
    "maybe_color": st.none() | st.sampled_from(["RED", "BLUE"]),
    "nothing": st.none(),
    "single_union": st.integers(-(2**63), 2**63 - 1),
})
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _decode_columnar(schema: dict[str, Any], bodies: list[bytes]) -> tuple[dict[str, Any], np.ndarray, list[Any]]:
    layout = flat_layout(schema)
    assert layout is not None
    joined = b"".join(bodies)
    buf = np.frombuffer(joined + bytes(PADDING), dtype=np.uint8)
    lengths = np.array([len(b) for b in bodies], dtype=np.int64)
    end = np.cumsum(lengths)
    decoder = FlatDecoder(layout, frozenset(f["name"] for f in schema["fields"]))
    return decoder.decode(joined, buf, end - lengths, end)


def _fastavro(schema: dict[str, Any], body: bytes) -> tuple[dict[str, Any], int] | None:
    stream = io.BytesIO(body)
    try:
        record = fastavro.schemaless_reader(stream, fastavro.parse_schema(strip_logical_types(schema)), None)
    except Exception:  # noqa: BLE001 - the reference decoder: any failure means "does not decode"
        return None
    return record, stream.tell()  # type: ignore[return-value]


def _value(columns: dict[str, Any], name: str, row: int) -> Any:
    column = columns[name]
    if column.null is not None and column.null[row]:
        return None
    if column.values is None:
        return None
    value = column.values[row]
    return value.item() if isinstance(value, np.generic) else value


def _same(left: Any, right: Any) -> bool:
    if isinstance(left, float) and isinstance(right, float) and math.isnan(left):
        return math.isnan(right)
    return bool(left == right)


@SETTINGS
@given(st.lists(ALL_TYPES_RECORD, min_size=1, max_size=10))
def test_valid_messages_decode_exactly_like_fastavro(records: list[dict[str, Any]]) -> None:
    bodies = []
    for record in records:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, ALL_TYPES, record)
        bodies.append(out.getvalue())
    columns, good, failures = _decode_columnar(ALL_TYPES, bodies)
    assert failures == [] and good.tolist() == list(range(len(records)))
    for row, body in enumerate(bodies):
        reference = _fastavro(ALL_TYPES, body)
        assert reference is not None
        for name, expected in reference[0].items():
            assert _same(_value(columns, name, row), expected), (name, row)


@SETTINGS
@given(st.lists(st.binary(max_size=200), min_size=1, max_size=20), st.sampled_from(["contract", "all_types"]))
def test_whatever_the_columnar_decoder_accepts_fastavro_reads_identically(bodies: list[bytes], which: str) -> None:
    schema = CONTRACT.parsed_schema if which == "contract" else ALL_TYPES
    columns, good, failures = _decode_columnar(schema, bodies)
    assert sorted(good.tolist() + [f.position for f in failures]) == list(range(len(bodies)))
    for row, position in enumerate(good.tolist()):
        reference = _fastavro(schema, bodies[position])
        assert reference is not None, bodies[position]
        record, consumed = reference
        assert consumed == len(bodies[position])
        for name, expected in record.items():
            assert _same(_value(columns, name, row), expected), name


@pytest.mark.parametrize(
    ("body", "truncated", "detail"),
    [
        (b"", True, "ends while reading field 'flag'"),
        (b"\x02", False, "boolean byte 2 is neither 0 nor 1"),
        (b"\x00" + b"\xff" * 11, False, "'small': variable-length integer longer than 10 bytes"),
        (b"\x00\xfe\xff\xff\xff\x1f", False, "'small': 4294967295 does not fit a 32-bit int"),
        (b"\x00\x02\x02" + bytes(4) + b"\x06", False, "'amount': union branch index 3 out of range (2 branches)"),
        # amount null (branch 0), label null (branch 1), then the faulty field
        (b"\x00\x02\x02" + bytes(4) + b"\x00\x02\x01", False, "'blob': negative length -1"),
        (b"\x00\x02\x02" + bytes(4) + b"\x00\x02\x00\x08", False, "'color': enum symbol index 4 out of range (3 symbols)"),
    ],
)
def test_corrupt_messages_name_the_field_and_the_fault(body: bytes, truncated: bool, detail: str) -> None:
    _, good, failures = _decode_columnar(ALL_TYPES, [body])
    assert good.tolist() == []
    (failure,) = failures
    assert failure.truncated == truncated and detail in failure.detail


def test_schemas_beyond_flat_records_fall_back_to_fastavro() -> None:
    nested = fastavro.parse_schema({"type": "record", "name": "N", "fields": [
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "either", "type": ["null", "int", "string"]},
    ]})
    assert flat_layout(nested) is None
    bodies = []
    for record in ({"tags": ["a", "b"], "either": 3}, {"tags": [], "either": "x"}):
        out = io.BytesIO()
        fastavro.schemaless_writer(out, nested, record)
        bodies.append(out.getvalue())
    bodies.append(bodies[0] + b"\x00")
    joined = b"".join(bodies)
    lengths = np.array([len(b) for b in bodies])
    end = np.cumsum(lengths)
    columns, good, failures = RecordDecoder(nested, frozenset({"tags", "either"})).decode(
        joined, np.frombuffer(joined + bytes(PADDING), dtype=np.uint8), end - lengths, end
    )
    assert good.tolist() == [0, 1]
    assert columns["either"].values.tolist() == [3, "x"]
    assert columns["tags"].values.tolist() == [["a", "b"], []]
    (failure,) = failures
    assert failure.position == 2 and "left over" in failure.detail


def test_invalid_utf8_is_caught_when_every_row_holds_the_same_bytes() -> None:
    schema = fastavro.parse_schema({"type": "record", "name": "S", "fields": [{"name": "s", "type": "string"}]})
    bad = b"\x04\xff\xfe"  # a 2-byte string that is not UTF-8
    columns, good, failures = _decode_columnar(schema, [bad, bad, b"\x04ok"])
    assert good.tolist() == [2] and columns["s"].values.tolist() == ["ok"]
    assert [(f.position, f.truncated) for f in failures] == [(0, False), (1, False)]
    assert all("not valid UTF-8" in f.detail for f in failures)
    columns, good, failures = _decode_columnar(schema, [b"\x04ok"] * 3)
    assert columns["s"].values.tolist() == ["ok"] * 3 and failures == []
