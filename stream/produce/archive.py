"""An archive of events (Parquet, CSV or JSON lines) as the messages of one partition, for ``driftline replay --input``.

Each row is mapped to the contract like ``driftline produce`` maps it (:mod:`.input_files`) and
encoded as the producer encodes it (Avro single-object encoding of the contract's schema), so the
replay's runner decodes and checks it like a message from Kafka. A row's offset is its 0-based
position in the file (a JSON-lines file: its line number − 1), stable from run to run, so a replay
that stopped continues where its checkpoint says; its timestamp is its event time. A row that does
not fit the contract's types cannot become a message: it is counted with the reason (the first few
are kept as examples), never dropped silently.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from driftline.schemas import avro_types
from driftline.schemas.columnar_encoder import BatchEncoder
from driftline.schemas.contract import Contract
from driftline.schemas.wire import SINGLE_OBJECT_MARKER
from driftline.stream.runner import MessageBatch
from driftline.stream.runner.replay import ReplayItem

from .input_files import RowMapper, RowProblem, file_format, read_file

__all__ = ["Archive", "Bound"]

#: A bound of a replay's range: an offset (a row's position) or a time (UTC).
Bound = int | datetime


@dataclass
class Archive:
    """The rows of ``path`` in ``[start, end)`` as :class:`ReplayItem` batches of partition 0.

    ``start``/``end`` are offsets (0-based row positions) or times (the rows' event time); ``None``:
    from the first row, to the last. :attr:`unencodable` counts the rows that do not fit the
    contract (:attr:`problems`: the first few).
    """

    path: Path
    contract: Contract
    fmt: str | None = None
    model_version: str | None = None
    start: Bound | None = None
    end: Bound | None = None
    unencodable: int = 0
    problems: list[RowProblem] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.fmt = file_format(self.path, self.fmt)
        parsed = self.contract.parsed_schema
        header = SINGLE_OBJECT_MARKER + avro_types.fingerprint_bytes(avro_types.fingerprint(avro_types.canonical_form(parsed)))
        self._encoder = BatchEncoder(parsed, header)
        self._time_field = self.contract.role_field("event_time").name

    def __iter__(self) -> Iterator[ReplayItem]:
        mapper = RowMapper(self.contract, model_version=self.model_version, unit="line" if self.fmt == "jsonl" else "row")
        for source in read_file(self.path, mapper, self.fmt):
            if source.invalid_rows:
                self.unencodable += source.invalid_rows
                self.problems.extend(source.problems[: 5 - len(self.problems)])
            if not source.rows or source.positions is None:
                continue
            offsets = source.positions - 1
            times = np.asarray(pc.fill_null(source.columns[self._time_field].cast(pa.int64()), 0), dtype=np.int64)
            keep = self._within(offsets, times)
            if not keep.any():
                continue
            columns = source.columns
            if not keep.all():
                mask = pa.array(keep)
                columns = {name: array.filter(mask) for name, array in columns.items()}
            payloads = self._encoder.encode(columns)
            yield ReplayItem(0, MessageBatch(offsets[keep].tolist(), list(payloads), np.maximum(times[keep], 0).tolist()))

    def _within(self, offsets: np.ndarray, times: np.ndarray) -> np.ndarray:
        keep = np.ones(len(offsets), dtype=bool)
        for bound, lower in ((self.start, True), (self.end, False)):
            if bound is None:
                continue
            values = offsets if isinstance(bound, int) else times
            limit = bound if isinstance(bound, int) else int(bound.timestamp() * 1000)
            keep &= values >= limit if lower else values < limit
        return keep
