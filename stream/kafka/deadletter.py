"""The dead-letter topic: every rejected message, with its original bytes and the reason in headers.

Delivery is at-least-once: a worker killed after dead-lettering a message but before its checkpoint
committed will dead-letter it again after the restart. Every copy carries the same key,
``<topic>:<partition>:<offset>`` of the source message, so a reader counts distinct keys (or reads the
topic with log compaction, which keeps one copy per key).
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from driftline.schemas.results import Rejection

from .errors import DeadLetterError
from .topics import CLIENT_LOGGER, DEADLETTER_TOPIC, HEADER_DETAIL, HEADER_FIELD, HEADER_REASON, HEADER_SOURCE

__all__ = ["DeadLetterError", "DeadLetterProducer", "source_key"]

#: Header values are cut to this many bytes: a reason's detail quotes the offending value, which
#: must not turn a dead-letter message into an oversized one.
MAX_DETAIL_BYTES = 1_000


def source_key(topic: str, partition: int, offset: int) -> str:
    """The dead-letter key of a source message.

    >>> source_key("predictions.credit_risk", 0, 42)
    'predictions.credit_risk:0:42'
    """
    return f"{topic}:{partition}:{offset}"


class DeadLetterProducer:
    """Sends rejected messages to the dead-letter topic and reports every failed delivery.

    Parameters
    ----------
    bootstrap_servers
        Kafka bootstrap servers.
    topic
        The dead-letter topic (default ``driftline.deadletter``).
    producer_config
        Extra librdkafka settings (they override the defaults).
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic: str = DEADLETTER_TOPIC,
        producer_config: dict[str, Any] | None = None,
    ) -> None:
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            # The original bytes may be up to the source topic's limit; the headers add little.
            "message.max.bytes": 2_000_000,
            "logger": CLIENT_LOGGER,
        }
        config.update(producer_config or {})
        self.topic = topic
        self._producer = Producer(config)
        self._errors: list[str] = []
        self.sent = 0

    def send(self, payload: bytes | None, *, topic: str, partition: int, offset: int, rejection: Rejection) -> None:
        """Queue one rejected message (non-blocking; :meth:`flush` waits for the acknowledgements)."""
        key = source_key(topic, partition, offset).encode()
        headers: list[tuple[str, str | bytes | None]] = [
            (HEADER_REASON, rejection.reason.value.encode()),
            (HEADER_DETAIL, rejection.detail.encode("utf-8", "replace")[:MAX_DETAIL_BYTES]),
            (HEADER_SOURCE, key),
        ]
        if rejection.field is not None:
            headers.append((HEADER_FIELD, rejection.field.encode("utf-8", "replace")))
        while True:
            try:
                self._producer.produce(
                    self.topic,
                    value=payload,
                    key=key,
                    headers=headers,
                    on_delivery=self._on_delivery,
                )
                break
            except BufferError:
                # The local queue is full: serve delivery reports until there is room again.
                self._producer.poll(0.1)
            except KafkaException as exc:
                raise DeadLetterError(f"could not queue a dead-letter message for {source_key(topic, partition, offset)}: {exc}") from exc
        self.sent += 1
        self._producer.poll(0)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every queued message is acknowledged.

        Raises
        ------
        DeadLetterError
            A message was not delivered, or the timeout passed first. The caller must not commit
            the source offsets then: the messages are re-processed (and dead-lettered again).
        """
        remaining = self._producer.flush(timeout)
        errors, self._errors = self._errors, []
        if remaining:
            raise DeadLetterError(f"{remaining} dead-letter message(s) not acknowledged within {timeout} s")
        if errors:
            raise DeadLetterError(f"{len(errors)} dead-letter message(s) failed; first: {errors[0]}")

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._errors.append(f"{error.str()} (key {message.key()!r})")
