"""``driftline worker`` on Kafka: the Faust app, its batch reader and merge stage, topics, producers and settings.

This face re-exports the light parts (topic names, settings, errors); the worker itself —
:func:`driftline.stream.kafka.worker.run_worker`, which loads Faust, confluent-kafka and SQLAlchemy —
is imported from its module when it is run.
"""

from __future__ import annotations

from .errors import DeadLetterError, KafkaUnavailableError, PartialsError, TopicSetupError, WorkerError
from .settings import WorkerSettings
from .topics import (
    DEADLETTER_TOPIC,
    HEADER_DETAIL,
    HEADER_FIELD,
    HEADER_REASON,
    HEADER_SOURCE,
    PREDICTION_TOPIC_PREFIX,
    end_offsets,
    ensure_topics,
    partials_topic,
    prediction_topic,
)

__all__ = [
    "DEADLETTER_TOPIC",
    "HEADER_DETAIL",
    "HEADER_FIELD",
    "HEADER_REASON",
    "HEADER_SOURCE",
    "PREDICTION_TOPIC_PREFIX",
    "DeadLetterError",
    "KafkaUnavailableError",
    "PartialsError",
    "TopicSetupError",
    "WorkerError",
    "WorkerSettings",
    "end_offsets",
    "ensure_topics",
    "partials_topic",
    "prediction_topic",
]
