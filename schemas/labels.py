"""Label events: decode the ground truth that arrives for earlier predictions (``schemas/label.avsc``).

A label is a small record — the prediction's ``event_id``, the model, the outcome and when it was
observed — on the topic ``labels.<model>``, framed like prediction events (Avro single-object encoding,
or Confluent framing with a Schema Registry). :class:`LabelCodec` decodes a batch of them into columns
(:class:`LabelBatch`) for the label join, and turns every payload it cannot use into a
:class:`~.results.Rejection` with a reason, as the prediction codec does: nothing is dropped silently.

Volumes are those of predictions at most, so each label is read by fastavro with the writer schema
resolved against ``driftline.events.Label`` (an ``int`` label written by an older producer is promoted
to ``double``); the framing is read for the whole batch at once (:func:`.wire.frame_batch`).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import numpy as np

from .codec import Codec
from .results import Rejection, RejectReason
from .wire import CONFLUENT, SINGLE_OBJECT, frame_batch

__all__ = ["LABEL_RECORD", "LabelBatch", "LabelCodec"]

#: Full name of the label event's record in the catalog.
LABEL_RECORD = "driftline.events.Label"


@dataclass
class LabelBatch:
    """Columns of the usable labels of one batch of payloads, and why the others were not usable.

    ``len(rows) + len(rejections) == n_input`` always holds.
    """

    model: str
    n_input: int
    rows: np.ndarray  # int64: input position of each usable label
    prediction_ids: list[str]
    label_times_ms: np.ndarray  # int64
    labels: np.ndarray  # float64
    rejections: list[Rejection] = field(default_factory=list)


class LabelCodec:
    """Decode label events of one model; shares the prediction codec's catalog and registry client.

    Examples
    --------
    >>> from driftline.schemas.contract_catalog import Catalog
    >>> from driftline.schemas.wire import encode_single_object
    >>> codec = Codec(Catalog.load())
    >>> schema = codec.catalog.event_schema(LABEL_RECORD)
    >>> good = encode_single_object({"event_id": "e1", "model_name": "credit_risk", "label": 1.0, "label_time": 5}, schema)
    >>> other = encode_single_object({"event_id": "e2", "model_name": "fraud", "label": 0.0, "label_time": 6}, schema)
    >>> batch = LabelCodec(codec).decode_batch([good, other, b"junk"], model="credit_risk")
    >>> batch.prediction_ids, [r.reason.value for r in batch.rejections]
    (['e1'], ['model_mismatch', 'bad_magic'])
    """

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.reader_schema = fastavro.parse_schema(codec.catalog.event_schema(LABEL_RECORD))
        self._fingerprints = {fp for fp, name in codec.catalog.fingerprints.items() if name == LABEL_RECORD}
        self._writers: dict[tuple[int, int], Any] = {}  # (format, key) -> parsed writer schema, or why there is none

    def _writer(self, fmt: int, key: int) -> Any:
        cached = self._writers.get((fmt, key))
        if cached is not None:
            return cached
        if fmt == SINGLE_OBJECT:
            known = self.codec.catalog.writer_schema(key)
            if known is None or key not in self._fingerprints:
                name = "no known schema" if known is None else f"the schema of {known.full_name}"
                writer: Any = (RejectReason.UNKNOWN_FINGERPRINT, f"fingerprint {key:#018x} is {name}, not {LABEL_RECORD}")
            else:
                writer = fastavro.parse_schema(known.parsed_schema)
        else:
            looked_up = self.codec.registry_schema(key)
            if isinstance(looked_up, str):
                writer = (RejectReason.UNKNOWN_SCHEMA_ID, looked_up)
            elif f"{looked_up.get('namespace', '')}.{looked_up.get('name')}".lstrip(".") != LABEL_RECORD:
                writer = (RejectReason.UNKNOWN_SCHEMA_ID, f"schema id {key} is {looked_up.get('name')!r}, not {LABEL_RECORD}")
            else:
                writer = fastavro.parse_schema(looked_up)
        self._writers[(fmt, key)] = writer
        return writer

    def decode_batch(self, payloads: Sequence[bytes], model: str) -> LabelBatch:
        """Decode the labels of ``model`` among ``payloads``; every other payload is a rejection.

        Raises
        ------
        ValueError
            ``model`` is not a model of the catalog.
        """
        if not isinstance(model, str) or model not in self.codec.catalog:
            raise ValueError(f"model {model!r} has no contract in the catalog")
        framing = frame_batch(payloads, self.codec.max_message_bytes)
        rejections = [Rejection(reason, index, None, detail) for index, reason, detail in framing.rejections]
        rejected = {r.index for r in rejections}
        rows: list[int] = []
        ids: list[str] = []
        times: list[int] = []
        labels: list[float] = []
        for index in range(len(payloads)):
            if index in rejected:
                continue
            fmt = int(framing.fmt[index])
            if fmt not in (CONFLUENT, SINGLE_OBJECT):
                rejections.append(Rejection(RejectReason.BAD_MAGIC, index, None,
                                            "neither Confluent framing (0x00) nor single-object encoding (0xC3 0x01)"))
                continue
            writer = self._writer(fmt, int(framing.key[index]))
            if isinstance(writer, tuple):
                rejections.append(Rejection(writer[0], index, None, writer[1]))
                continue
            body = framing.joined[int(framing.start[index]):int(framing.end[index])]
            try:
                record = fastavro.schemaless_reader(io.BytesIO(body), writer, self.reader_schema)
            except (EOFError, ValueError, IndexError, KeyError, TypeError, OverflowError) as exc:  # what fastavro raises on bad bytes
                rejections.append(Rejection(RejectReason.CORRUPT, index, None, f"not a valid {LABEL_RECORD}: {exc}"))
                continue
            assert isinstance(record, dict)
            problem = _check(record, model)
            if problem is not None:
                rejections.append(Rejection(problem[0], index, problem[1], problem[2]))
                continue
            rows.append(index)
            ids.append(record["event_id"])
            times.append(_millis(record["label_time"]))
            labels.append(float(record["label"]))
        rejections.sort(key=lambda r: r.index)
        return LabelBatch(model, len(payloads), np.asarray(rows, dtype=np.int64), ids,
                          np.asarray(times, dtype=np.int64), np.asarray(labels, dtype=np.float64), rejections)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _millis(value: Any) -> int:
    # fastavro turns timestamp-millis into an aware datetime; integer arithmetic keeps it exact.
    if isinstance(value, int):
        return value
    return int((value - _EPOCH) // timedelta(milliseconds=1))


def _check(record: dict[str, Any], model: str) -> tuple[RejectReason, str, str] | None:
    if record["model_name"] != model:
        return RejectReason.MODEL_MISMATCH, "model_name", f"label for model {record['model_name']!r}, read as {model!r}"
    if not record["event_id"]:
        return RejectReason.EMPTY, "event_id", "empty event_id: the label names no prediction"
    if not math.isfinite(record["label"]):
        return RejectReason.NOT_FINITE, "label", f"label {record['label']!r} is not finite"
    return None
