"""``driftline worker`` on Kafka: the Faust app, its agents, topics, the dead-letter producer and settings."""

from __future__ import annotations

from .deadletter import DeadLetterError, DeadLetterProducer, source_key
from .settings import WorkerSettings
from .topics import (
    DEADLETTER_TOPIC,
    PREDICTION_TOPIC_PREFIX,
    KafkaUnavailableError,
    TopicSetupError,
    ensure_topics,
    prediction_topic,
)
from .worker import WorkerError, run_worker

__all__ = [
    "DEADLETTER_TOPIC",
    "PREDICTION_TOPIC_PREFIX",
    "DeadLetterError",
    "DeadLetterProducer",
    "KafkaUnavailableError",
    "TopicSetupError",
    "WorkerError",
    "WorkerSettings",
    "ensure_topics",
    "prediction_topic",
    "run_worker",
    "source_key",
]
