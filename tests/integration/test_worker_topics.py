"""The worker's topic set-up on the real broker: missing topics are created with one partition,
a model topic with more is refused (its detectors need the model's events in one order)."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from worker_harness import MODEL, unique

from driftline.stream.kafka.errors import WorkerError
from driftline.stream.kafka.settings import WorkerSettings
from driftline.stream.kafka.topics import KafkaUnavailableError, ensure_topics
from driftline.stream.kafka.worker import prepare_topics


def _settings(bootstrap: str, prefix: str) -> WorkerSettings:
    return WorkerSettings(bootstrap_servers=bootstrap, database_url="postgresql://unused", models=(MODEL,),
                          consumer_group=unique("topics-"), topic_prefix=prefix, deadletter_topic=prefix + "dlq",
                          metrics_port=None)


def _partitions(bootstrap: str, topic: str) -> int:
    return len(AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic=topic, timeout=10).topics[topic].partitions)


def test_missing_topics_are_created_with_one_partition(kafka_bootstrap: str) -> None:
    prefix = unique("topics-") + "."
    settings = _settings(kafka_bootstrap, prefix)
    assert prepare_topics(settings) == {settings.topics[MODEL]: 0}  # created empty: end offset 0
    assert _partitions(kafka_bootstrap, settings.topics[MODEL]) == 1
    assert _partitions(kafka_bootstrap, settings.deadletter_topic) == 1
    # Again, with the topics there: nothing changes.
    assert prepare_topics(settings) == {settings.topics[MODEL]: 0}


def test_a_model_topic_with_two_partitions_is_refused(kafka_bootstrap: str) -> None:
    prefix = unique("topics-") + "."
    settings = _settings(kafka_bootstrap, prefix)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic(settings.topics[MODEL], num_partitions=2, replication_factor=1)]).values():
        future.result(30)
    with pytest.raises(WorkerError, match=r"has 2 partitions; driftline needs one partition per model topic"):
        prepare_topics(settings)
    assert ensure_topics(kafka_bootstrap, [settings.topics[MODEL]], 10) == {settings.topics[MODEL]: 2}


def test_an_unreachable_broker_is_named() -> None:
    with pytest.raises(KafkaUnavailableError, match=r"Kafka at 127\.0\.0\.1:9 does not answer"):
        ensure_topics("127.0.0.1:9", ["anything"], 1.0)
