"""The producer of the window-partials topic: the partitions of split models send their partials to the merger.

Keyed by model, so all of a model's messages go to one partition of the topic, each runner's in
the order it sent them (an idempotent producer neither duplicates nor reorders on retries). A
message that is not acknowledged fails the checkpoint that sent it (:class:`PartialsError`): the
runner does not commit, and the worker treats it as an outage, like a dead-letter failure.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from .connection import KafkaConnection
from .errors import PartialsError
from .topics import CLIENT_LOGGER

__all__ = ["MAX_PARTIAL_BYTES", "PartialsProducer"]

#: The largest partials message (producer ``message.max.bytes`` and the topic's ``max.message.bytes``
#: when the worker creates it): a window partial carries one KLL sketch and histogram per numeric
#: field (about 10 kB each at most) and the frequent items of each categorical one.
MAX_PARTIAL_BYTES = 16_000_000


class PartialsProducer:
    """Sends window partials, signals and progress to the partials topic (:class:`~driftline.stream.runner.PartialsPort`)."""

    def __init__(self, kafka: KafkaConnection, *, topic: str, producer_config: dict[str, Any] | None = None,
                 what: str = "window-partials") -> None:
        config: dict[str, Any] = {
            **kafka.client_config(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.max.bytes": MAX_PARTIAL_BYTES,
            "compression.type": "lz4",
            "logger": CLIENT_LOGGER,
        }
        config.update(producer_config or {})
        self.topic = topic
        self.what = what  # what its messages are, for error messages
        self._producer = Producer(config)
        self._errors: list[str] = []
        self.sent = 0

    def send(self, key: bytes, value: bytes) -> None:
        """Queue one message (non-blocking; :meth:`flush` waits for the acknowledgements)."""

        def on_delivery(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                self._errors.append(f"{error.str()} (key {message.key()!r}, {len(value)} bytes)")

        while True:
            try:
                self._producer.produce(self.topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                self._producer.poll(0.1)
            except KafkaException as exc:
                raise PartialsError(f"could not queue a {self.what} message of {key!r} ({len(value)} bytes): {exc}") from exc
        self.sent += 1
        self._producer.poll(0)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every queued message is acknowledged.

        Raises
        ------
        PartialsError
            A message was not delivered, or the timeout passed first.
        """
        remaining = self._producer.flush(timeout)
        errors, self._errors = self._errors, []
        if remaining:
            raise PartialsError(f"{remaining} {self.what} message(s) not acknowledged within {timeout} s")
        if errors:
            raise PartialsError(f"{len(errors)} {self.what} message(s) failed; first: {errors[0]}")
