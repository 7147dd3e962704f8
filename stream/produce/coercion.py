"""Converting a column of input to the type the Avro writer schema wants, and naming the rows that cannot be.

:func:`convert_column` takes an Arrow column (Parquet, CSV) or a list of decoded JSON values and
returns it as the writer field's Avro type wants it: integers from whole floats, epoch milliseconds
from timestamps, dates or ISO-8601 text, numbers and booleans from CSV text. Each value that cannot
be converted becomes a null, and its row is returned with the reason; what to do with such a row is
the caller's decision (:class:`~driftline.stream.produce.input_files.RowMapper`). Whole columns are
converted vectorised where their types allow; mixed types, and text that a vectorised cast refuses,
are converted element by element. Integer ranges, whole numbers and the words of a refusal are those of
:mod:`~driftline.schemas.columnar_encoder`, so every path of ``driftline produce`` refuses the same
values the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from driftline.schemas.columnar_encoder import INTEGER_RANGES, WriterField, does_not_fit, is_whole_number

__all__ = ["convert_column"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TARGET = {"boolean": pa.bool_(), "int": pa.int32(), "long": pa.int64(), "float": pa.float32(), "double": pa.float64(),
           "string": pa.string(), "enum": pa.string()}


def _epoch_ms(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a time")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not is_whole_number(value):  # NaN and ±inf included: int() of infinity raises OverflowError
            raise ValueError(f"{value!r} is not whole epoch milliseconds")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{value!r} is neither epoch milliseconds nor an ISO-8601 time") from None
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)  # naive times are UTC
        return (moment - _EPOCH) // timedelta(milliseconds=1)
    raise ValueError(f"{value!r} is not a time")


def _python_value(spec: WriterField, value: Any, text: bool) -> Any:
    """``value`` as the writer field wants it, or ``ValueError`` saying why it cannot be."""
    kind = spec.avro_type
    if kind in ("string", "enum"):
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a string")
        if kind == "enum" and value not in spec.symbols:
            raise ValueError(f"{value!r} is not one of the enum's symbols {list(spec.symbols)}")
        return value
    if spec.timestamp:
        return _epoch_ms(value)
    if isinstance(value, str):
        if not text:
            raise ValueError(f"{value!r} is text, the field is {kind}")
        stripped = value.strip()
        if kind == "boolean":
            if stripped.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"{value!r} is not true/false")
            return stripped.lower() in ("true", "1")
        try:
            value = int(stripped) if kind in ("int", "long") and stripped.lstrip("+-").isdigit() else float(stripped)
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
    if kind == "boolean":
        if isinstance(value, bool) or value in (0, 1):
            return bool(value)
        raise ValueError(f"{value!r} is not a boolean")
    if not isinstance(value, (int, float)) or (isinstance(value, bool) and kind in ("float", "double")):
        raise ValueError(f"{value!r} is not a number")
    if kind in ("float", "double"):
        return float(value)
    if isinstance(value, float) and not is_whole_number(value):
        raise ValueError(f"{value!r} is not a whole number ({kind})")
    number = int(value)
    low, high = INTEGER_RANGES[kind]
    if not low <= number <= high:
        raise ValueError(does_not_fit(number, kind))
    return number


def _by_element(spec: WriterField, values: list[Any], text: bool) -> tuple[pa.Array, dict[int, str]]:
    """Convert element by element (the slow path: mixed types, or text that fails a vectorised cast)."""
    out: list[Any] = []
    bad: dict[int, str] = {}
    for i, value in enumerate(values):
        if value is None:
            out.append(None)
            continue
        try:
            out.append(_python_value(spec, value, text))
        except ValueError as exc:
            bad[i] = str(exc)
            out.append(None)
    return pa.array(out, type=pa.int64() if spec.timestamp else _TARGET[spec.avro_type]), bad


def _numeric(spec: WriterField, array: pa.Array) -> tuple[pa.Array, dict[int, str]] | None:
    """Vectorised conversion of a numeric, boolean or temporal column; None if the types do not mix."""
    kind = spec.avro_type
    source = array.type
    if spec.timestamp and (pa.types.is_timestamp(source) or pa.types.is_date(source)):
        tz = source.tz if pa.types.is_timestamp(source) else None
        array = array.cast(pa.timestamp("ms", tz=tz), safe=False).cast(pa.int64())
        source = array.type
    if not (pa.types.is_integer(source) or pa.types.is_floating(source) or pa.types.is_boolean(source)):
        return None
    if (kind == "boolean" and pa.types.is_floating(source)) or (spec.timestamp and pa.types.is_boolean(source)):
        return None
    valid = np.asarray(array.is_valid(), dtype=bool)
    numbers = np.asarray(array.fill_null(False if pa.types.is_boolean(source) else 0).to_numpy(zero_copy_only=False))
    bad = np.zeros(len(array), dtype=bool)
    if kind in ("float", "double"):
        floats = numbers.astype(np.float64)
        if kind == "float":
            with np.errstate(invalid="ignore"):
                bad = np.isfinite(floats) & (np.abs(floats) > np.finfo(np.float32).max)
        converted = pa.array(floats, type=pa.float64(), mask=~valid | bad).cast(_TARGET[kind], safe=False)
    elif kind == "boolean":
        bad = ~np.isin(numbers, (0, 1))
        converted = pa.array(numbers.astype(bool), mask=~valid | bad)
    else:
        low, high = INTEGER_RANGES[kind]
        if pa.types.is_floating(source):
            with np.errstate(invalid="ignore"):
                bad = ~np.isfinite(numbers) | (numbers != np.floor(numbers)) | (numbers < low) | (numbers >= float(high) + 1)
            integers = np.where(bad, 0, numbers).astype(np.int64)
        elif pa.types.is_uint64(source):
            bad = numbers > np.uint64(high)
            integers = np.where(bad, 0, numbers).astype(np.int64)
        else:
            integers = numbers.astype(np.int64)
            bad = (integers < low) | (integers > high)
        converted = pa.array(integers, mask=~valid | bad).cast(pa.int64() if spec.timestamp else _TARGET[kind])
    rows = np.flatnonzero(bad & valid).tolist()
    # Only the first few rows of a batch are ever reported; the others need no particular reason.
    return converted, {i: _why(spec, array[i].as_py()) if n < 5 else f"does not fit {kind}" for n, i in enumerate(rows)}


def _why(spec: WriterField, value: Any) -> str:
    try:
        _python_value(spec, value, False)
    except ValueError as exc:
        return str(exc)
    return f"{value!r} does not fit {spec.avro_type}"


def convert_column(spec: WriterField, column: pa.Array | pa.ChunkedArray | list[Any], *, text: bool) -> tuple[pa.Array, dict[int, str]]:
    """A column as the writer field wants it, and the rows (0-based) that cannot be converted, with why.

    ``text``: strings are parsed as numbers and booleans (CSV); otherwise a string in a numeric field
    is a wrong type. Time fields take epoch milliseconds, timestamps, dates and ISO-8601 text
    everywhere (naive times are UTC). Nulls stay nulls; whether the field may be null is checked later.
    """
    if isinstance(column, list):
        try:
            column = pa.array(column)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            return _by_element(spec, column, text)
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_null(array.type):
        return pa.nulls(len(array), pa.int64() if spec.timestamp else _TARGET[spec.avro_type]), {}
    is_text = pa.types.is_string(array.type) or pa.types.is_large_string(array.type)
    if spec.avro_type in ("string", "enum") and is_text:
        array = array.cast(pa.string())
        if spec.avro_type == "string":
            return array, {}
        unknown = np.asarray(pc.invert(pc.is_in(array, value_set=pa.array(spec.symbols))).fill_null(False), dtype=bool)
        if not unknown.any():
            return array, {}
    elif not is_text:
        converted = _numeric(spec, array) if spec.avro_type not in ("string", "enum") else None
        if converted is not None:
            return converted
    elif text or spec.timestamp:
        # The fast path parses plain numbers, booleans and epoch milliseconds, then checks them as
        # any numeric column; anything else ("41.0", ISO times, bad cells) goes element by element.
        integral = spec.timestamp or spec.avro_type in ("int", "long")
        wide = pa.int64() if integral else pa.bool_() if spec.avro_type == "boolean" else pa.float64()
        try:
            parsed = pc.cast(array, wide)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        else:
            converted = _numeric(spec, parsed)
            if converted is not None:
                return converted
    return _by_element(spec, array.to_pylist(), text)
