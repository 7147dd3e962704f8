"""Input columns converted to what the writer schema wants: CSV text parsed, times from anything, bad cells named."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest

from driftline.schemas.columnar_encoder import WriterField
from driftline.stream.produce.coercion import convert_column


def _field(avro_type: str, *, timestamp: bool = False, symbols: tuple[str, ...] = ()) -> WriterField:
    return WriterField("x", avro_type, False, -1, -1, symbols, False, None, timestamp)


@pytest.mark.parametrize(
    ("spec", "column", "text", "values", "bad"),
    [
        # CSV text: parsed, whole floats accepted for ints, ranges checked
        (_field("int"), pa.array(["41", "41.0", "3000000000", "x", None]), True, [41, 41, None, None, None],
         {2: "3000000000 does not fit an int (32 bits)", 3: "'x' is not a number"}),
        (_field("float"), pa.array(["1.5", "1e39"]), True, [1.5, None], {1: "1e+39 does not fit float"}),
        (_field("boolean"), pa.array(["true", "0", "maybe"]), True, [True, False, None], {2: "'maybe' is not true/false"}),
        # typed formats: text is not a number, but times may be ISO text anywhere
        (_field("double"), pa.array(["1.5"]), False, [None], {0: "'1.5' is text, the field is double"}),
        (_field("long", timestamp=True), pa.array(["2026-01-01T00:00:01Z", "1767225600000", "noon"]), False,
         [1_767_225_601_000, 1_767_225_600_000, None], {2: "'noon' is neither epoch milliseconds nor an ISO-8601 time"}),
        (_field("long", timestamp=True), pa.array([datetime(2026, 1, 1, tzinfo=UTC)], pa.timestamp("s", tz="UTC")), False,
         [1_767_225_600_000], {}),
        (_field("enum", symbols=("A", "B")), pa.array(["A", "C"]), False, ["A", None], {1: "'C' is not one of the enum's symbols ['A', 'B']"}),
        (_field("string"), pa.array([1, 2]), False, [None, None], {0: "1 is not a string", 1: "2 is not a string"}),
    ],
)
def test_convert_column(spec: WriterField, column: pa.Array, text: bool, values: list[Any], bad: dict[int, str]) -> None:
    array, problems = convert_column(spec, column, text=text)
    assert array.to_pylist() == values
    assert problems == bad


def test_json_values_of_mixed_types_are_converted_one_by_one() -> None:
    array, problems = convert_column(_field("int"), [1, 2.0, "3", True, None, 2.5], text=False)
    assert array.to_pylist() == [1, 2, None, 1, None, None]
    assert problems == {2: "'3' is text, the field is int", 5: "2.5 is not a whole number (int)"}
