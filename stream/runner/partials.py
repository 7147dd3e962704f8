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
* ``"performance"`` (``"partials"``): label accumulators of windows, ``[start, realised, estimate]``
  each (:class:`~driftline.stream.monitor.results.PerformancePartial`);
* ``"errors"`` (``"label_times_ms"``, ``"prediction_ids"``, ``"errors"``): labels released in
  observation order, with their errors (for the model's concept-drift test);
* ``"challenger"`` (``"windows"``): ``[start, compared, champion right, challenger right, only the
  champion right, only the challenger right]`` of each window the partition has completed;
* ``"progress"`` (``"max_event_time_ms"``, ``"idle"``, and with labels ``"labels"``: ``"done_before"``,
  ``"settled_before_ms"``, ``"events_per_second"``): how far the partition's published partials
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

from driftline.stream.monitor.label_merge import LabelProgress, bound_from_json, bound_to_json
from driftline.stream.monitor.merge import partial_signal_to_dict, window_partial_to_dict
from driftline.stream.monitor.results import BatchResult, ChallengerPartial, ObservedErrors, PerformancePartial

from .ports import PartitionKey

__all__ = [
    "FORMAT",
    "KINDS",
    "PartialsMessage",
    "challenger_partials_from_body",
    "decode_partials_message",
    "label_progress_from_body",
    "observed_errors_from_body",
    "partial_messages",
    "performance_partials_from_body",
    "progress_message",
]

FORMAT = 1
KINDS = ("window", "signals", "schema_change", "performance", "errors", "challenger", "progress")
#: Signals per message: a drifting stream re-signals often, and a message must stay well below 1 MB.
SIGNALS_PER_MESSAGE = 1_000
#: Released labels per message (about 50 bytes each).
ERRORS_PER_MESSAGE = 10_000


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
    if result.performance_partials:
        partials = [[p.window_start_ms, p.realised, p.estimate] for p in result.performance_partials]
        yield _message(key, model, partitions, "performance", {"partials": partials})
    for observed in result.observed_errors:
        for start in range(0, len(observed.errors), ERRORS_PER_MESSAGE):
            end = start + ERRORS_PER_MESSAGE
            yield _message(key, model, partitions, "errors", {
                "label_times_ms": observed.label_times_ms[start:end], "prediction_ids": observed.prediction_ids[start:end],
                "errors": observed.errors[start:end]})
    if result.challenger_partials:
        windows = [[p.window_start_ms, *p.counts] for p in result.challenger_partials]
        yield _message(key, model, partitions, "challenger", {"windows": windows})


def progress_message(
    key: PartitionKey, model: str, partitions: int, max_event_time_ms: int | None, *, idle: bool, labels: LabelProgress | None = None
) -> tuple[bytes, bytes]:
    """The message that tells the merger how far a partition's published partials (and labels) go, and whether it is idle."""
    body: dict[str, Any] = {"max_event_time_ms": max_event_time_ms, "idle": idle}
    if labels is not None:
        body["labels"] = {"done_before": bound_to_json(labels.done_before) if labels.done_before is not None else "none",
                          "settled_before_ms": bound_to_json(labels.settled_before_ms),
                          "events_per_second": labels.events_per_second}
    return _message(key, model, partitions, "progress", body)


def performance_partials_from_body(body: dict[str, Any]) -> list[PerformancePartial]:
    """The performance partials of a ``"performance"`` message (raises ``KeyError``/``TypeError``/``ValueError`` if malformed)."""
    out = []
    for start, realised, estimate in body["partials"]:
        if realised is not None and (len(realised) != 8 or not isinstance(realised[6], list) or not isinstance(realised[7], list)):
            raise ValueError(f"a malformed performance accumulator: {realised!r}"[:200])
        out.append(PerformancePartial(int(start), None if realised is None else [*(int(v) for v in realised[:6]),
                                      [float(v) for v in realised[6]], [float(v) for v in realised[7]]],
                                      None if estimate is None else [int(v) for v in estimate]))
    return out


def observed_errors_from_body(body: dict[str, Any]) -> ObservedErrors:
    """The released labels of an ``"errors"`` message."""
    times, ids, errors = body["label_times_ms"], body["prediction_ids"], body["errors"]
    if not len(times) == len(ids) == len(errors):
        raise ValueError("label_times_ms, prediction_ids and errors differ in length")
    return ObservedErrors([int(t) for t in times], [str(i) for i in ids], [float(e) for e in errors])


def challenger_partials_from_body(body: dict[str, Any]) -> list[ChallengerPartial]:
    """The completed windows of a ``"challenger"`` message."""
    out = []
    for start, *counts in body["windows"]:
        if len(counts) != 5:
            raise ValueError(f"a challenger window needs five counts, got {counts!r}")
        a, b, c, d, e = (int(v) for v in counts)
        out.append(ChallengerPartial(int(start), (a, b, c, d, e)))
    return out


def label_progress_from_body(body: dict[str, Any]) -> LabelProgress | None:
    """The label progress of a ``"progress"`` message (``None``: the partition joins no labels)."""
    labels = body.get("labels")
    if labels is None:
        return None
    done = labels["done_before"]
    return LabelProgress(None if done == "none" else bound_from_json(done), bound_from_json(labels["settled_before_ms"]),
                         float(labels["events_per_second"]))


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
