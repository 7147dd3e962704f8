"""The worker's topic set-up on the real broker: missing topics are created with one partition; a
model topic of several partitions is taken as it is, and brings the window-partials topic along."""

from __future__ import annotations

import dataclasses

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from worker_harness import MODEL, unique

from driftline.stream.kafka.connection import KafkaConnection
from driftline.stream.kafka.partials import MAX_PARTIAL_BYTES
from driftline.stream.kafka.settings import WorkerSettings
from driftline.stream.kafka.topics import KafkaUnavailableError, ensure_topics
from driftline.stream.kafka.worker import prepare_topics


def _settings(bootstrap: str, prefix: str) -> WorkerSettings:
    return WorkerSettings(kafka=KafkaConnection(bootstrap), database_url="postgresql://unused", models=(MODEL,),
                          consumer_group=unique("topics-"), topic_prefix=prefix, deadletter_topic=prefix + "dlq",
                          metrics_port=None)


def _partitions(bootstrap: str, topic: str) -> int:
    return len(AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic=topic, timeout=10).topics[topic].partitions)


def test_missing_topics_are_created_with_one_partition(kafka_bootstrap: str) -> None:
    prefix = unique("topics-") + "."
    settings = _settings(kafka_bootstrap, prefix)
    layout = prepare_topics(settings)
    assert layout.end_offsets == {(settings.topics[MODEL], 0): 0}  # created empty: end offset 0
    assert layout.partitions == {settings.topics[MODEL]: 1} and layout.split_topics == []
    assert _partitions(kafka_bootstrap, settings.topics[MODEL]) == 1
    assert _partitions(kafka_bootstrap, settings.deadletter_topic) == 1
    # Again, with the topics there: nothing changes.
    assert prepare_topics(settings) == layout


def test_a_model_topic_of_several_partitions_brings_the_partials_topic(kafka_bootstrap: str) -> None:
    prefix = unique("topics-") + "."
    settings = dataclasses.replace(_settings(kafka_bootstrap, prefix), partials_topic=prefix + "partials", partials_partitions=3)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic(settings.topics[MODEL], num_partitions=2, replication_factor=1)]).values():
        future.result(30)
    layout = prepare_topics(settings)
    assert layout.partitions == {settings.topics[MODEL]: 2} and layout.split_topics == [settings.topics[MODEL]]
    assert layout.end_offsets == {(settings.topics[MODEL], 0): 0, (settings.topics[MODEL], 1): 0}
    assert _partitions(kafka_bootstrap, settings.partials_topic) == 3
    config = admin.describe_configs([ConfigResource("topic", settings.partials_topic)])
    (described,) = config.values()
    assert int(described.result(30)["max.message.bytes"].value) == MAX_PARTIAL_BYTES


def test_an_unreachable_broker_is_named() -> None:
    with pytest.raises(KafkaUnavailableError, match=r"Kafka at 127\.0\.0\.1:9 does not answer"):
        ensure_topics(KafkaConnection("127.0.0.1:9"), ["anything"], 1.0)
