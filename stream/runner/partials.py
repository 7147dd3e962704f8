"""The messages of the window-partials topic: what the partitions of a split model tell its merger.

A model whose prediction topic has several partitions runs one engine per partition; each sends
its share of the model's windows to the merger (:class:`~driftline.stream.monitor.merge.WindowMerger`,
run by :class:`~driftline.stream.runner.merge_runner.MergeRunner`) over the partials topic. Every
message is keyed by the model's name, so all of a model's messages land in one partition of that
topic, each runner's in the order it sent them. The value is a JSON object:

``{"format": 1, "type": …, "model": …, "topic": …, "partition": …, "partitions": …, …}``

* ``"window"`` (``"partial"``): a closed window's partial — counts, and the state of every field's
  histogram, moments and sketches;
* ``"signals"`` (``"signals"``): streaming-detector signals of one batch, in order;
* ``"schema_change"`` (``"record"``): a writer schema the partition saw first;
* ``"progress"`` (``"max_event_time_ms"``, ``"idle"``): how far the partition's published partials
  go — sent after them with every checkpoint, and when the partition goes idle.

Examples
--------
>>> from driftline.stream.runner.ports import PartitionKey
>>> key, value = progress_message(PartitionKey("g", "predictions.churn", 2), "churn", 4, 1_000, idle=False)
>>> key
b'churn'
>>> message = decode_partials_message(value)
>>> message.kind, message.partition, message.partitions, message.body["max_event_time_ms"]
('progress', 2, 4, 1000)
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from driftline.stream.monitor.merge import partial_signal_to_dict, window_partial_to_dict
from driftline.stream.monitor.results import BatchResult

from .ports import PartitionKey

__all__ = ["FORMAT", "KINDS", "PartialsMessage", "decode_partials_message", "partial_messages", "progress_message"]

FORMAT = 1
KINDS = ("window", "signals", "schema_change", "progress")
#: Signals per message: a drifting stream re-signals often, and a message must stay well below 1 MB.
SIGNALS_PER_MESSAGE = 1_000


@dataclass(frozen=True)
class PartialsMessage:
    """One decoded message of the partials topic: who sent it, and its body (by kind, see the module)."""

    kind: str
    model: str
    topic: str
    partition: int
    partitions: int
    body: dict[str, Any]


def _message(key: PartitionKey, model: str, partitions: int, kind: str, body: dict[str, Any]) -> tuple[bytes, bytes]:
    value = {"format": FORMAT, "type": kind, "model": model, "topic": key.topic, "partition": key.partition, "partitions": partitions, **body}
    return model.encode("utf-8"), json.dumps(value, separators=(",", ":"), allow_nan=False).encode("utf-8")


def partial_messages(key: PartitionKey, model: str, partitions: int, result: BatchResult) -> Iterator[tuple[bytes, bytes]]:
    """The (key, value) messages that carry ``result``'s partials, signals and schema changes to the merger."""
    for record in result.schema_changes:
        yield _message(key, model, partitions, "schema_change", {"record": dataclasses.asdict(record)})
    signals = sorted(result.partial_signals, key=lambda s: (s.row, s.signal.detector, s.signal.feature, s.signal.model_version))
    for start in range(0, len(signals), SIGNALS_PER_MESSAGE):
        chunk = signals[start : start + SIGNALS_PER_MESSAGE]
        yield _message(key, model, partitions, "signals", {"signals": [partial_signal_to_dict(s) for s in chunk]})
    for partial in result.window_partials:
        yield _message(key, model, partitions, "window", {"partial": window_partial_to_dict(partial)})


def progress_message(key: PartitionKey, model: str, partitions: int, max_event_time_ms: int | None, *, idle: bool) -> tuple[bytes, bytes]:
    """The message that tells the merger how far a partition's published partials go, and whether it is idle."""
    return _message(key, model, partitions, "progress", {"max_event_time_ms": max_event_time_ms, "idle": idle})


def decode_partials_message(value: bytes | None) -> PartialsMessage:
    """Parse one message of the partials topic.

    Raises
    ------
    ValueError
        Not a partials message of this format (the text says what is wrong).
    """
    if not value:
        raise ValueError("an empty message")
    try:
        data = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if data.get("format") != FORMAT:
        raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
    kind = data.get("type")
    if kind not in KINDS:
        raise ValueError(f"unknown type {kind!r}")
    try:
        message = PartialsMessage(
            kind=str(kind),
            model=str(data.pop("model")),
            topic=str(data.pop("topic")),
            partition=int(data.pop("partition")),
            partitions=int(data.pop("partitions")),
            body=data,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"a field is missing or malformed: {exc!r}") from exc
    if not 0 <= message.partition < message.partitions:
        raise ValueError(f"partition {message.partition} is not one of {message.partitions}")
    return message
