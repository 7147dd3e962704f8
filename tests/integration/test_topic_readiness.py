"""A new topic is ready when its partition's leader answers an offset request, not when metadata names it.

Right after a topic's creation the broker may name the partition's leader in its metadata before it
serves the partition: an offset request then gets NOT_LEADER_FOR_PARTITION (a CI run's worker
crashed on it). ``ensure_topics`` waits for an answer and ``prepare_topics`` retries its own
requests; the retry loop itself is checked here without a broker, with Kafka errors made by hand.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from worker_harness import MODEL, unique

from driftline.stream.kafka.connection import KafkaConnection
from driftline.stream.kafka.errors import TopicSetupError, WorkerError
from driftline.stream.kafka.settings import WorkerSettings
from driftline.stream.kafka.topics import CLIENT_LOGGER, TRANSIENT_OFFSET_ERRORS, end_offsets, ensure_topics, retry_offset_request
from driftline.stream.kafka.worker import prepare_topics

#: Fresh topics created in a row by the stress test: a CI run hit the race about once in six
#: worker starts, the local broker (four clients at once, just started) 6 times in 2,160 creations.
FRESH_TOPICS = 20


def _settings(bootstrap: str, prefix: str) -> WorkerSettings:
    return WorkerSettings(kafka=KafkaConnection(bootstrap), database_url="postgresql://unused", models=(MODEL,),
                          consumer_group=unique("ready-"), topic_prefix=prefix, deadletter_topic=prefix + "dlq",
                          metrics_port=None)


def _failing(*codes: int, then: int = 7) -> tuple[list[float], Callable[[float], int]]:
    """A request that raises a KafkaException of each of ``codes`` in turn, then returns ``then``; and its calls' time-outs."""
    calls: list[float] = []
    errors: Iterator[int] = iter(codes)

    def request(timeout: float) -> int:
        calls.append(timeout)
        code = next(errors, None)
        if code is not None:
            raise KafkaException(KafkaError(code))
        return then

    return calls, request


# --- the retry loop, without a broker ---


def test_every_transient_error_name_is_a_kafka_error() -> None:
    # A misspelt name would never match, and that error would fail at once instead of being retried.
    assert all(hasattr(KafkaError, name) for name in TRANSIENT_OFFSET_ERRORS)
    for name in ("NOT_LEADER_FOR_PARTITION", "LEADER_NOT_AVAILABLE", "UNKNOWN_TOPIC_OR_PART", "_TIMED_OUT", "REQUEST_TIMED_OUT"):
        assert name in TRANSIENT_OFFSET_ERRORS


def test_transient_errors_are_retried_until_the_leader_answers(caplog: pytest.LogCaptureFixture) -> None:
    calls, request = _failing(KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                              KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION, KafkaError.REQUEST_TIMED_OUT)
    caplog.set_level(logging.DEBUG, logger="driftline.kafka.topics")
    assert retry_offset_request(request, "topic t partition 0", time.monotonic() + 30.0, 30.0) == 7
    assert len(calls) == 6
    assert all(0 < timeout <= 5.0 for timeout in calls)  # no request may eat the whole deadline
    assert [record.getMessage().split(":")[1].strip() for record in caplog.records] == [
        "NOT_LEADER_FOR_PARTITION", "LEADER_NOT_AVAILABLE", "UNKNOWN_TOPIC_OR_PART", "_UNKNOWN_PARTITION", "REQUEST_TIMED_OUT"
    ]


def test_any_other_error_fails_at_once_with_its_name() -> None:
    calls, request = _failing(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(TopicSetupError, match=r"^topic t partition 0: the offset request failed \(TOPIC_AUTHORIZATION_FAILED: "):
        retry_offset_request(request, "topic t partition 0", time.monotonic() + 30.0, 30.0)
    assert len(calls) == 1


def test_a_leader_that_never_answers_is_given_up_at_the_deadline() -> None:
    calls, request = _failing(*[KafkaError.NOT_LEADER_FOR_PARTITION] * 1000)
    started = time.monotonic()
    with pytest.raises(TopicSetupError, match=(r"^topic t partition 0: its leader did not answer an offset request within 0\.5 s "
                                               r"\(tries: \d+; last error NOT_LEADER_FOR_PARTITION: Broker: Not leader for partition\)$")):
        retry_offset_request(request, "topic t partition 0", started + 0.5, 0.5)
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 1.0
    assert len(calls) >= 4  # 50, 100, 200 ms pauses, then the rest of the 0.5 s: retried, not spun (nor given up early)
    assert len(calls) <= 6


# --- the real broker ---


def test_fresh_topics_answer_offset_requests_as_soon_as_they_are_prepared(kafka_bootstrap: str) -> None:
    # Each topic is new, and each is asked for its offsets at once, by a new client, with no retry.
    for _ in range(FRESH_TOPICS):
        prefix = unique("ready-") + "."
        settings = _settings(kafka_bootstrap, prefix)
        assert prepare_topics(settings).end_offsets == {(settings.topics[MODEL], 0): 0}
        other = unique("ready-plain-")
        assert ensure_topics(KafkaConnection(kafka_bootstrap), [other], 30.0) == {other: 1}
        consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": unique("ready-"), "logger": CLIENT_LOGGER})
        try:
            for topic in (settings.deadletter_topic, other):
                assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 0), topic
        finally:
            consumer.close()


def test_end_offsets_waits_for_a_topic_created_meanwhile(kafka_bootstrap: str, caplog: pytest.LogCaptureFixture) -> None:
    # The partition does not exist when the first request is sent: a real broker's transient error, retried.
    topic = unique("ready-late-")
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap, "logger": CLIENT_LOGGER})

    def create() -> None:
        time.sleep(1.0)
        for future in admin.create_topics([NewTopic(topic, num_partitions=1)]).values():
            future.result(30)

    creator = threading.Thread(target=create)
    caplog.set_level(logging.DEBUG, logger="driftline.kafka.topics")
    creator.start()
    try:
        assert end_offsets(KafkaConnection(kafka_bootstrap), [(topic, 0)], 30.0) == {(topic, 0): 0}
    finally:
        creator.join()
    assert caplog.records, "answered at once: the topic existed before it was created?"
    assert all(record.getMessage().startswith(f"topic {topic} partition 0: ") for record in caplog.records)


def test_an_unreachable_leader_is_named_with_the_last_error() -> None:
    started = time.monotonic()
    with pytest.raises(TopicSetupError, match=(r"^topic never-ready partition 0: its leader did not answer an offset request within 1 s "
                                               r"\(tries: \d+; last error _(ALL_BROKERS_DOWN|TRANSPORT|TIMED_OUT): ")):
        end_offsets(KafkaConnection("127.0.0.1:1"), [("never-ready", 0)], 1.0)
    assert time.monotonic() - started < 3.0


def test_prepare_topics_names_an_unreachable_broker() -> None:
    with pytest.raises(WorkerError, match=r"Kafka at 127\.0\.0\.1:1 does not answer"):
        prepare_topics(_settings("127.0.0.1:1", "never."), timeout=1.0)
