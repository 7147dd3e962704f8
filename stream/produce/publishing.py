"""Publishing the events of ``driftline produce``: check a file's rows first, pace, report.

A row of a file that does not fit is never dropped silently: by default the whole file is checked
before anything is sent and the first bad row aborts (:class:`~driftline.stream.produce.input_files.InputError`
naming its row and column); with ``skip_invalid`` such rows are skipped, counted and reported.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from driftline.schemas.contract import Contract
from driftline.stream.kafka.connection import KafkaConnection
from driftline.stream.kafka.errors import KafkaUnavailableError, TopicSetupError
from driftline.stream.kafka.topics import ensure_topics

from .input_files import InputError, RowMapper, RowProblem, SourceBatch, file_format, read_file
from .producer import DeliveryError, EventProducer

__all__ = ["PublishReport", "check_file", "ensure_topic", "publish"]


def check_file(
    path: Path, fmt: str | None, contract: Contract, *, model_version: str | None, skip_invalid: bool
) -> tuple[int, Callable[[], Iterator[SourceBatch]]]:
    """The number of rows to send and the batches of a file; unless ``skip_invalid``, every row is checked first.

    Raises
    ------
    InputError
        The file cannot be read, or (without ``skip_invalid``) a row does not fit: nothing is sent.
    """
    unit = "line" if file_format(path, fmt) == "jsonl" else "row"
    mapper = RowMapper(contract, model_version=model_version, unit=unit)
    sources = partial(read_file, path, mapper, fmt)
    if skip_invalid:
        return 0, sources
    total = 0
    for batch in sources():
        if batch.problems:
            raise InputError(f"{path}: {batch.problems[0]} (nothing was sent; --skip-invalid skips such rows)")
        total += batch.rows
    return total, sources


def ensure_topic(kafka: KafkaConnection, topic: str, timeout: float, *, partitions: int = 1) -> list[str]:
    """Fail fast when Kafka does not answer; create a missing topic with ``partitions`` partitions; return warnings.

    Raises
    ------
    DeliveryError
        Kafka did not answer, or refused the connection's credentials (or TLS failed).
    """
    try:
        found = ensure_topics(kafka, [topic], timeout, answer_timeout=min(timeout, 15.0), partitions={topic: partitions})[topic]
    except KafkaUnavailableError as exc:
        raise DeliveryError(str(exc)) from exc
    except TopicSetupError as exc:
        # Not allowed to create topics: the broker may auto-create it, or the send fails then.
        return [str(exc)]
    if found != partitions:
        return [f"topic {topic} already has {found} partition(s), not {partitions}; its events go to those"]
    return []


@dataclass
class PublishReport:
    """What :func:`publish` sent."""

    sent: int
    sent_bytes: int
    seconds: float
    unacknowledged: int
    skipped: int
    skipped_examples: list[RowProblem]


def publish(
    producer: EventProducer,
    sources: Iterator[SourceBatch],
    total: int,
    *,
    rate: float | None,
    delivery_timeout: float,
    progress: bool,
) -> PublishReport:
    """Encode and send every batch (at a steady ``rate`` if given), then wait for the acknowledgements."""
    from tqdm import tqdm

    bar = tqdm(total=total or None, unit="ev", unit_scale=True, disable=not progress, file=sys.stderr, dynamic_ncols=True)
    pacer = _Pacer(rate) if rate else None
    skipped = 0
    examples: list[RowProblem] = []
    started: float | None = None
    try:
        for batch in sources:
            if batch.invalid_rows:
                skipped += batch.invalid_rows
                examples.extend(batch.problems[: 5 - len(examples)])
            if not batch.rows:
                continue
            encoded = producer.encode_batch(batch.columns, writer_schema=batch.writer_schema)
            if started is None:
                started = time.perf_counter()  # from the first send to the last acknowledgement
            if pacer is None:
                producer.send_encoded(encoded)
            else:
                pacer.send(producer, encoded.payloads, encoded.keys)
            bar.update(len(encoded))
        remaining = producer.close(delivery_timeout)
    finally:
        bar.close()
        with contextlib.suppress(DeliveryError):
            producer.close(5.0)  # after an error: deliver what can be, release the client
    seconds = time.perf_counter() - started if started is not None else 0.0
    return PublishReport(producer.sent, producer.sent_bytes, seconds, remaining, skipped, examples)


class _Pacer:
    """Release messages at a steady wall-clock rate: message ``i`` goes at ``start + i / rate``."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.start: float | None = None
        self.released = 0

    def send(self, producer: EventProducer, payloads: Sequence[bytes], keys: Sequence[Any]) -> None:
        i = 0
        while i < len(payloads):
            now = time.perf_counter()
            if self.start is None:
                self.start = now
            due = int((now - self.start) * self.rate) + 1 - self.released
            if due <= 0:
                producer.poll(0)
                time.sleep(max(0.0, self.start + self.released / self.rate - time.perf_counter()))
                continue
            stop = min(len(payloads), i + due)
            for payload, key in zip(payloads[i:stop], keys[i:stop]):
                producer.send_raw(payload, key)
            self.released += stop - i
            i = stop
