"""Kafka topic names and dead-letter header names shared by the worker, the producer and replay.

One topic per model, ``predictions.<model>``, with **one partition**: the per-event detectors
(Page–Hinkley, ADWIN) need the model's events in one total order, and the same order is what
makes a replay compute exactly what the live run computed (DESIGN decision 1). Throughput scales
across models (one agent each); a model that outgrows one partition needs per-partition engines
merged by window, which driftline does not do yet.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from typing import Any

from .errors import KafkaUnavailableError, TopicSetupError

__all__ = [
    "CLIENT_LOGGER",
    "DEADLETTER_TOPIC",
    "HEADER_DETAIL",
    "HEADER_FIELD",
    "HEADER_REASON",
    "HEADER_SOURCE",
    "PREDICTION_TOPIC_PREFIX",
    "KafkaUnavailableError",
    "TopicSetupError",
    "ensure_topics",
    "prediction_topic",
]

PREDICTION_TOPIC_PREFIX = "predictions."
DEADLETTER_TOPIC = "driftline.deadletter"

#: Headers of a dead-lettered message (values are UTF-8). Its value is the original bytes and its
#: key is ``HEADER_SOURCE``'s value, ``<topic>:<partition>:<offset>``: a worker that restarts after a
#: crash may dead-letter the same message again, and the key tells such copies apart.
HEADER_REASON = "driftline.reason"
HEADER_FIELD = "driftline.field"
HEADER_DETAIL = "driftline.detail"
HEADER_SOURCE = "driftline.source"

#: Where librdkafka's own log lines go (every Kafka client of driftline is given it), instead of
#: straight to stderr: a command run against an absent broker would print hundreds of
#: connection-refused lines before its one useful error. ``driftline`` commands silence it; the
#: worker logs its errors.
CLIENT_LOGGER = logging.getLogger("driftline.kafka.client")

_MODEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def prediction_topic(model: str, prefix: str = PREDICTION_TOPIC_PREFIX) -> str:
    """The topic of a model's prediction events; ``prefix`` namespaces an environment (``staging.predictions.``).

    >>> prediction_topic("credit_risk")
    'predictions.credit_risk'
    """
    if not _MODEL_NAME.match(model):
        raise ValueError(f"model: {model!r} is not a valid model name (an Avro record name)")
    return prefix + model


def ensure_topics(bootstrap: str, names: Sequence[str], timeout: float, *, answer_timeout: float | None = None) -> dict[str, int]:
    """Create the missing topics, with one partition each; return every topic's partition count.

    A topic created here is returned once its partitions have a leader (creation is asynchronous),
    so no message meets a topic the broker does not know yet; one that another client created
    meanwhile counts as created. ``answer_timeout`` (default ``timeout``) bounds the first request.

    Raises
    ------
    KafkaUnavailableError
        Kafka did not answer within ``answer_timeout``.
    TopicSetupError
        Kafka refused to create a topic.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": CLIENT_LOGGER}
    admin = AdminClient(config)
    try:
        metadata = admin.list_topics(timeout=timeout if answer_timeout is None else answer_timeout)
    except KafkaException as exc:
        raise KafkaUnavailableError(f"Kafka at {bootstrap} does not answer: {exc}") from exc
    partitions = {name: len(metadata.topics[name].partitions) for name in names if name in metadata.topics}
    missing = [name for name in names if name not in partitions]
    if not missing:
        return partitions
    for name, future in admin.create_topics([NewTopic(name, num_partitions=1) for name in missing]).items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":  # another client was faster: fine
                raise TopicSetupError(f"could not create topic {name}: {exc}") from exc
    deadline = time.monotonic() + timeout
    for name in missing:
        while True:
            try:
                found = admin.list_topics(topic=name, timeout=min(timeout, 5.0)).topics.get(name)
            except KafkaException:
                found = None
            if found is not None and found.error is None and found.partitions and all(p.leader >= 0 for p in found.partitions.values()):
                partitions[name] = len(found.partitions)
                break
            if time.monotonic() >= deadline:
                raise TopicSetupError(f"topic {name} was created but has no partition leader after {timeout:.0f} s")
            time.sleep(0.1)
    return partitions
