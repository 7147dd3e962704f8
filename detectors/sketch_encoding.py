"""Binary encoding of the window sketches (checkpoints): versioned, canonical, validated.

``to_bytes(from_bytes(b)) == b`` for every input the decoders accept. Numeric states put the
(randomised) KLL bytes last so the deterministic prefix can be compared byte for byte; categorical
states write the frequent items in sorted order, because the library's own bytes change order every
time they are decoded. The decoders check the layout before handing bytes to DataSketches: its
deserialiser can crash the process on truncated KLL bytes (seen with datasketches 5.2).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
from datasketches import frequent_items_error_type, frequent_strings_sketch, kll_doubles_sketch

from .sketches import (
    CategoricalWindowState,
    NumericWindowState,
    _check_counts,
    _checked_bin_edges,
    categorical_initialize,
)

__all__ = [
    "categorical_from_bytes", "categorical_to_bytes", "numeric_from_bytes", "numeric_to_bytes",
    "window_state_from_bytes",
]

_FORMAT_VERSION = 1
_NUMERIC_MAGIC, _CATEGORICAL_MAGIC = b"DLWN", b"DLWC"
# magic, version, number of edges, count, nulls, non_finite, out_of_range, min, max, mean, M2
_NUMERIC_HEADER = struct.Struct("<4sBIqqqqdddd")
# magic, version, lg_max_k, number of categories, count, nulls, unseen
_CATEGORICAL_HEADER = struct.Struct("<4sBBIqqq")
_LG_MAX_BYTE = 3  # offset of lg_max_map_size in DataSketches' frequent-items preamble


def numeric_to_bytes(state: NumericWindowState) -> bytes:
    """Encode a numeric state: header, edges, histogram, then the (random) KLL bytes last."""
    header = _NUMERIC_HEADER.pack(
        _NUMERIC_MAGIC, _FORMAT_VERSION, state.bin_edges.size, state.count, state.nulls,
        state.non_finite, state.out_of_range, state.minimum, state.maximum, state.mean,
        state.sum_squared_deviations,
    )
    return b"".join((header, state.bin_edges.astype("<f8").tobytes(),
                     state.histogram.astype("<i8").tobytes(), state.quantile_sketch.serialize()))


def _check_kll_layout(raw: bytes) -> None:
    # datasketches 5.2 reads a KLL sketch's levels array before checking the buffer's size, so
    # truncated or corrupt bytes can crash the process: check the layout before handing it over.
    # Layout: 8-byte preamble (family 15, m = 8 at offset 6, flags at 3); a full sketch adds n,
    # min_k, number of levels, the level offsets, min, max, then the retained items.
    if len(raw) < 8 or raw[2] != 15 or raw[6] != 8:
        raise ValueError("data holds a corrupt KLL sketch preamble")
    flags = raw[3]
    if flags in (1, 4):  # empty, or holding a single item
        if raw[:2] != bytes([2, 1 if flags == 1 else 2]) or len(raw) != (8 if flags == 1 else 16):
            raise ValueError("data holds a corrupt KLL sketch preamble")
        return
    n, _, n_levels = struct.unpack_from("<QHB", raw, 8) if len(raw) >= 20 else (0, 0, 0)
    items_start = 20 + 4 * n_levels + 16
    if flags not in (0, 2) or raw[:2] != b"\x05\x01" or not 1 <= n_levels <= 61:
        raise ValueError("data holds a corrupt KLL sketch preamble")
    if len(raw) < items_start or (len(raw) - items_start) % 8:
        raise ValueError("data holds a truncated KLL sketch")
    levels = np.frombuffer(raw, "<u4", n_levels, 20).astype(np.int64)
    sizes = np.diff(np.append(levels, levels[0] + (len(raw) - items_start) // 8))
    # an item in level h stands for 2**h values
    if np.any(sizes < 0) or sum(int(size) << h for h, size in enumerate(sizes)) != n:
        raise ValueError("data holds a KLL sketch with inconsistent levels")


def numeric_from_bytes(data: bytes) -> NumericWindowState:
    """Decode :func:`numeric_to_bytes` output; ``numeric_to_bytes(numeric_from_bytes(b)) == b``.

    Raises
    ------
    ValueError
        If ``data`` is not a valid encoding of a consistent state, or not the canonical one.
    """
    data = bytes(data)
    if len(data) < _NUMERIC_HEADER.size or data[:4] != _NUMERIC_MAGIC or (
            data[4] != _FORMAT_VERSION):
        raise ValueError("data is not a version-1 numeric window state")
    _, _, n_edges, count, nulls, non_finite, out_of_range, low, high, mean, m2 = (
        _NUMERIC_HEADER.unpack_from(data))
    histogram_start = _NUMERIC_HEADER.size + 8 * n_edges
    sketch_start = histogram_start + 8 * (n_edges - 1)
    if n_edges < 2 or sketch_start > len(data):
        raise ValueError("data is truncated or has fewer than two bin edges")
    edges = _checked_bin_edges(np.frombuffer(data, "<f8", n_edges, _NUMERIC_HEADER.size))
    histogram = np.frombuffer(data, "<i8", n_edges - 1, histogram_start).astype(np.int64)
    _check_counts(count=count, nulls=nulls, non_finite=non_finite, out_of_range=out_of_range)
    if np.any(histogram < 0) or int(histogram.sum()) != count:
        raise ValueError("data has a histogram inconsistent with its count")
    _check_kll_layout(data[sketch_start:])
    try:
        sketch = kll_doubles_sketch.deserialize(data[sketch_start:])
    except Exception as exc:  # the extension raises ValueError, IndexError or RuntimeError
        raise ValueError(f"data holds a corrupt KLL sketch: {exc}") from exc
    if sketch.n != count:
        raise ValueError("data holds a KLL sketch inconsistent with its count")
    state = NumericWindowState(edges, histogram, sketch, count, nulls, non_finite, out_of_range,
                               low, high, mean, m2)
    if numeric_to_bytes(state) != data:
        raise ValueError("data is not in canonical form")
    return state


def _canonical_sketch_bytes(sketch: Any) -> bytes:
    # DataSketches writes items in hash-slot order, which changes with every decode; rewriting
    # them in byte order gives exactly one encoding per state.
    raw = sketch.serialize()
    if sketch.total_weight == 0:
        return bytes(raw)
    header = bytearray(raw[:8])
    rows = sketch.get_frequent_items(frequent_items_error_type.NO_FALSE_NEGATIVES, 0)
    if rows:
        offset = rows[0][3] - rows[0][2]  # upper bound minus lower bound, the same for every item
    else:
        # Every item was purged (more distinct values than the map holds): DataSketches then
        # serialises the sketch as empty and its total weight is lost, so write the full preamble
        # (4 longs, no flags) with no items; the upper bound of any item is then the offset.
        offset = sketch.get_upper_bound("")
        header[0], header[5] = 4, 0
    pairs = sorted((str(item).encode("utf-8"), lower) for item, _, lower, _ in rows)
    return b"".join([
        bytes(header),
        struct.pack(f"<IIQQ{len(pairs)}Q", len(pairs), 0, sketch.total_weight, offset,
                    *(weight for _, weight in pairs)),
        *(struct.pack("<I", len(item)) + item for item, _ in pairs),
    ])


def categorical_to_bytes(state: CategoricalWindowState) -> bytes:
    """Encode a categorical state: header, counts, categories, then the sketch (canonical)."""
    names = [name.encode("utf-8") for name in state.categories]
    sketch_bytes = _canonical_sketch_bytes(state.frequent_items)
    header = _CATEGORICAL_HEADER.pack(
        _CATEGORICAL_MAGIC, _FORMAT_VERSION, sketch_bytes[_LG_MAX_BYTE], len(names),
        state.count, state.nulls, state.unseen,
    )
    return b"".join([header, state.category_counts.astype("<i8").tobytes(),
                     *(struct.pack("<I", len(name)) + name for name in names), sketch_bytes])


def categorical_from_bytes(data: bytes) -> CategoricalWindowState:
    """Decode :func:`categorical_to_bytes` output; the round trip is byte-exact.

    Raises
    ------
    ValueError
        If ``data`` is not a valid encoding of a consistent state, or not the canonical one.
    """
    data = bytes(data)
    if len(data) < _CATEGORICAL_HEADER.size or data[:4] != _CATEGORICAL_MAGIC or (
            data[4] != _FORMAT_VERSION):
        raise ValueError("data is not a version-1 categorical window state")
    _, _, lg_max_k, n_names, count, nulls, unseen = _CATEGORICAL_HEADER.unpack_from(data)
    position = _CATEGORICAL_HEADER.size + 8 * n_names
    if position > len(data):
        raise ValueError("data is truncated")
    counts = np.frombuffer(data, "<i8", n_names, _CATEGORICAL_HEADER.size).astype(np.int64)
    _check_counts(count=count, nulls=nulls, unseen=unseen)
    if np.any(counts < 0) or int(counts.sum()) + unseen != count:
        raise ValueError("data has category counts inconsistent with its count")
    names = []
    try:
        for _ in range(n_names):
            (length,) = struct.unpack_from("<I", data, position)
            names.append(data[position + 4: position + 4 + length].decode("utf-8"))
            position += 4 + length
        state = categorical_initialize(names, lg_max_k=lg_max_k)
        state.frequent_items = frequent_strings_sketch.deserialize(data[position:])
        state.category_counts, state.count, state.nulls, state.unseen = counts, count, nulls, unseen
        encoded = categorical_to_bytes(state)
    except (struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"data is truncated or corrupt: {exc}") from exc
    except (IndexError, RuntimeError) as exc:  # the extension's errors for a corrupt sketch
        raise ValueError(f"data holds a corrupt frequent-items sketch: {exc}") from exc
    if state.frequent_items.total_weight != count:
        raise ValueError("data holds a frequent-items sketch inconsistent with its count")
    if encoded != data:  # also catches a sketch whose lg_max_k disagrees with the header
        raise ValueError("data is not in canonical form")
    return state


def window_state_from_bytes(data: bytes) -> NumericWindowState | CategoricalWindowState:
    """Decode either kind of window state, dispatching on its magic bytes."""
    if bytes(data[:4]) == _NUMERIC_MAGIC:
        return numeric_from_bytes(data)
    if bytes(data[:4]) == _CATEGORICAL_MAGIC:
        return categorical_from_bytes(data)
    raise ValueError("data is not a driftline window state")
