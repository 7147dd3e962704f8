"""The dead-letter topic: every rejected message, with its original bytes and the reason in headers.

Delivery is at-least-once: a worker killed after dead-lettering a message but before its checkpoint
committed will dead-letter it again after the restart. Every copy carries the same key,
``<topic>:<partition>:<offset>`` of the source message, so a reader counts distinct keys (or reads the
topic with log compaction, which keeps one copy per key).

A message too large to forward whole — larger than the producer's limit, or refused by the broker as
too large for the dead-letter topic (``max.message.bytes`` of a source topic may be higher) — is
dead-lettered as a *record* instead: a JSON object with its topic, partition, offset, size, reason and
the first :data:`PREFIX_BYTES` of its bytes (base64), with the header ``driftline.truncated: true``.
So no single message can make a worker fail or crash-loop on its dead-letter topic.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from driftline.schemas.results import Rejection

from .connection import KafkaConnection
from .errors import DeadLetterError
from .topics import CLIENT_LOGGER, DEADLETTER_TOPIC, HEADER_DETAIL, HEADER_FIELD, HEADER_REASON, HEADER_SOURCE

__all__ = ["HEADER_TRUNCATED", "PREFIX_BYTES", "DeadLetterError", "DeadLetterProducer", "source_key"]

#: Header values are cut to this many bytes: a reason's detail quotes the offending value, which
#: must not turn a dead-letter message into an oversized one.
MAX_DETAIL_BYTES = 1_000
#: Set (``true``) on a dead-letter message that is a record of the source message instead of its bytes.
HEADER_TRUNCATED = "driftline.truncated"
#: How much of a message too large to forward whole its record keeps.
PREFIX_BYTES = 1_024
#: The producer's own limit of one message (librdkafka ``message.max.bytes``); the headers add little.
_MESSAGE_MAX_BYTES = 2_000_000
# Room left for key, headers and framing below the limit when deciding up front to send a record.
_OVERHEAD_BYTES = 4_096


def source_key(topic: str, partition: int, offset: int) -> str:
    """The dead-letter key of a source message.

    >>> source_key("predictions.credit_risk", 0, 42)
    'predictions.credit_risk:0:42'
    """
    return f"{topic}:{partition}:{offset}"


def summary_record(payload: bytes | None, *, topic: str, partition: int, offset: int, rejection: Rejection) -> bytes:
    """The JSON record that stands for a message too large to dead-letter whole.

    >>> from driftline.schemas.results import RejectReason
    >>> record = json.loads(summary_record(b"x" * 5, topic="t", partition=0, offset=7,
    ...     rejection=Rejection(RejectReason.OVERSIZED, 0, None, "5 bytes")))
    >>> record["size"], record["offset"], base64.b64decode(record["prefix"])
    (5, 7, b'xxxxx')
    """
    data = payload or b""
    return json.dumps(
        {
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "size": len(data),
            "reason": rejection.reason.value,
            "detail": rejection.detail[:MAX_DETAIL_BYTES],
            "prefix": base64.b64encode(data[:PREFIX_BYTES]).decode("ascii"),
        },
        sort_keys=True,
    ).encode("utf-8")


class DeadLetterProducer:
    """Sends rejected messages to the dead-letter topic and reports every failed delivery.

    Parameters
    ----------
    kafka
        The brokers and the connection's security.
    topic
        The dead-letter topic (default ``driftline.deadletter``).
    producer_config
        Extra librdkafka settings (they override the defaults).
    """

    def __init__(
        self,
        kafka: KafkaConnection,
        *,
        topic: str = DEADLETTER_TOPIC,
        producer_config: dict[str, Any] | None = None,
    ) -> None:
        config: dict[str, Any] = {
            **kafka.client_config(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "message.max.bytes": _MESSAGE_MAX_BYTES,
            "logger": CLIENT_LOGGER,
        }
        config.update(producer_config or {})
        self.topic = topic
        self._limit = int(config["message.max.bytes"]) - _OVERHEAD_BYTES
        self._producer = Producer(config)
        self._errors: list[str] = []
        # Messages the broker refused as too large, waiting to be sent again as records.
        self._too_large: list[tuple[bytes | None, str, int, int, Rejection]] = []
        self.sent = 0
        self.summarised = 0  # sent as records (too large to forward whole)

    def send(self, payload: bytes | None, *, topic: str, partition: int, offset: int, rejection: Rejection) -> None:
        """Queue one rejected message (non-blocking; :meth:`flush` waits for the acknowledgements)."""
        if payload is not None and len(payload) > self._limit:
            self._send_summary(payload, topic, partition, offset, rejection)
            return
        self._produce(payload, topic, partition, offset, rejection, truncated=False)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every queued message is acknowledged.

        Messages the broker refused as too large for the dead-letter topic are sent again as records
        (see the module docstring) before this returns.

        Raises
        ------
        DeadLetterError
            A message was not delivered, or the timeout passed first. The caller must not commit
            the source offsets then: the messages are re-processed (and dead-lettered again).
        """
        remaining = self._producer.flush(timeout)
        while self._too_large and not remaining:
            refused, self._too_large = self._too_large, []
            for payload, topic, partition, offset, rejection in refused:
                self._send_summary(payload, topic, partition, offset, rejection)
            remaining = self._producer.flush(timeout)
        errors, self._errors = self._errors, []
        if remaining:
            raise DeadLetterError(f"{remaining} dead-letter message(s) not acknowledged within {timeout} s")
        if errors:
            raise DeadLetterError(f"{len(errors)} dead-letter message(s) failed; first: {errors[0]}")

    def _send_summary(self, payload: bytes | None, topic: str, partition: int, offset: int, rejection: Rejection) -> None:
        record = summary_record(payload, topic=topic, partition=partition, offset=offset, rejection=rejection)
        self._produce(record, topic, partition, offset, rejection, truncated=True)
        self.summarised += 1

    def _produce(self, value: bytes | None, topic: str, partition: int, offset: int, rejection: Rejection, *, truncated: bool) -> None:
        key = source_key(topic, partition, offset).encode()
        headers: list[tuple[str, str | bytes | None]] = [
            (HEADER_REASON, rejection.reason.value.encode()),
            (HEADER_DETAIL, rejection.detail.encode("utf-8", "replace")[:MAX_DETAIL_BYTES]),
            (HEADER_SOURCE, key),
        ]
        if rejection.field is not None:
            headers.append((HEADER_FIELD, rejection.field.encode("utf-8", "replace")))
        if truncated:
            headers.append((HEADER_TRUNCATED, b"true"))

        def on_delivery(error: KafkaError | None, message: Message) -> None:
            if error is None:
                return
            if error.code() == KafkaError.MSG_SIZE_TOO_LARGE and not truncated:
                self._too_large.append((value, topic, partition, offset, rejection))
            else:
                self._errors.append(f"{error.str()} (key {message.key()!r})")

        while True:
            try:
                self._producer.produce(self.topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
                break
            except BufferError:
                # The local queue is full: serve delivery reports until there is room again.
                self._producer.poll(0.1)
            except KafkaException as exc:
                if exc.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE and not truncated:
                    self._send_summary(value, topic, partition, offset, rejection)
                    return
                raise DeadLetterError(f"could not queue a dead-letter message for {source_key(topic, partition, offset)}: {exc}") from exc
        self.sent += 1
        self._producer.poll(0)
