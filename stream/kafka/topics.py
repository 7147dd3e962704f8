"""Kafka topic names and dead-letter header names shared by the worker, the producer and replay.

One topic per model, ``predictions.<model>``. Most models need one partition: one engine sees the
model's events in one total order, and a replay computes exactly what the live run computed (DESIGN
decision 1). A model that outgrows one worker gets a topic of P partitions (create it so, for
example with ``driftline produce --partitions P``): each partition gets its own runner and engine,
and a second stage merges their window partials, sent over the group's
window-partials topic (:func:`partials_topic`), into the model's
windows (DESIGN decision 11, ``driftline.stream.monitor.merge``). ``driftline produce`` keys every
event by its id, so librdkafka's default partitioner (a hash of the key) spreads a model's events
over the partitions and keeps each id in one; events without an id go where the producer's sticky
partitioner puts them.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from .connection import KafkaConnection
from .errors import KafkaAuthenticationError, KafkaUnavailableError, TopicSetupError

if TYPE_CHECKING:
    from confluent_kafka import Consumer, KafkaError, TopicPartition
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.admin._metadata import ClusterMetadata

__all__ = [
    "ALERTS_TOPIC",
    "CLIENT_LOGGER",
    "DEADLETTER_TOPIC",
    "FEATURE_TOPIC_PREFIX",
    "HEADER_DETAIL",
    "HEADER_FIELD",
    "HEADER_REASON",
    "HEADER_SOURCE",
    "LABEL_TOPIC_PREFIX",
    "PREDICTION_TOPIC_PREFIX",
    "TRANSIENT_OFFSET_ERRORS",
    "KafkaAuthenticationError",
    "KafkaUnavailableError",
    "TopicSetupError",
    "end_offsets",
    "ensure_topics",
    "label_topic",
    "partials_topic",
    "prediction_topic",
    "retry_offset_request",
    "topic_partitions",
]

PREDICTION_TOPIC_PREFIX = "predictions."
#: A model's ground-truth labels (``schemas/label.avsc``) arrive on ``labels.<model>``, co-partitioned
#: with its prediction topic: keyed like the prediction, over the same number of partitions, so that
#: partition p of both topics holds the same ids and one runner joins them.
LABEL_TOPIC_PREFIX = "labels."
#: A feature set's rows (a contract of kind ``feature_set``) arrive on ``features.<feature set>``.
FEATURE_TOPIC_PREFIX = "features."
DEADLETTER_TOPIC = "driftline.deadletter"

#: Where the incidents' state changes go (``schemas/alert.avsc``; :mod:`driftline.stream.runner.alert_messages`).
ALERTS_TOPIC = "driftline.alerts"

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

#: The errors of an offset request (ListOffsets, ``get_watermark_offsets``) that a partition gives
#: while it becomes ready, by ``KafkaError.name()``: retried until the deadline, any other error fails
#: at once. Measured on the local broker (Kafka 3.9.1, KRaft, one node, just started), four clients
#: creating topics at once: right after ``create_topics`` returned — and, 6 times in 2,160 topics,
#: even after the metadata named the partition's leader — the offset request got
#: NOT_LEADER_FOR_PARTITION (presumably the broker's metadata names the new leader before its replica
#: manager serves the partition) or librdkafka's own _UNKNOWN_PARTITION (the client's metadata did not
#: have the partition yet).
#: LEADER_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PART (and librdkafka's _UNKNOWN_TOPIC),
#: OFFSET_NOT_AVAILABLE and the leader-epoch errors are the same race seen at other moments of a
#: leader's election; the time-outs and the lost connections (_TRANSPORT, _ALL_BROKERS_DOWN) are a
#: broker that is slow or restarting, which another try within the deadline may find back.
TRANSIENT_OFFSET_ERRORS = frozenset(
    {
        "NOT_LEADER_FOR_PARTITION",
        "LEADER_NOT_AVAILABLE",
        "UNKNOWN_TOPIC_OR_PART",
        "_UNKNOWN_PARTITION",
        "_UNKNOWN_TOPIC",
        "OFFSET_NOT_AVAILABLE",
        "FENCED_LEADER_EPOCH",
        "UNKNOWN_LEADER_EPOCH",
        "_TIMED_OUT",
        "REQUEST_TIMED_OUT",
        "_TRANSPORT",
        "_ALL_BROKERS_DOWN",
    }
)

#: First pause between two offset requests, doubled after each failure up to ``_RETRY_MAX_INTERVAL``.
#: Measured (see above): NOT_LEADER_FOR_PARTITION lasted at most 60 ms after the topic's creation and
#: was gone 10–20 ms after it was first seen; _UNKNOWN_PARTITION lasted up to 130 ms (the client
#: asks for the topic's metadata again after a back-off of about 100 ms). 50 ms makes the first retry
#: land after the usual race and the second after the client's refresh, without spinning.
_RETRY_INTERVAL = 0.05
#: A broker that needs longer (a cold JVM, a leader election) is asked once a second, not 20 times.
_RETRY_MAX_INTERVAL = 1.0
#: The longest one offset request may block: librdkafka waits out its whole time-out when no broker
#: answers (measured: ``_ALL_BROKERS_DOWN`` after exactly the time-out given), so a request lost to a
#: dropped connection is asked again before the deadline instead of eating all of it.
_ATTEMPT_TIMEOUT = 5.0
#: The shortest one, for the last try at the deadline (librdkafka answers a warm connection in ~2 ms).
_MIN_ATTEMPT_TIMEOUT = 0.1

#: The errors librdkafka reports (to ``error_cb``) when the broker refuses the client's credentials or the
#: TLS handshake fails: no retry mends them, so the first answer is given up at once (measured on the
#: local broker: a wrong SCRAM password is reported within 0.5 s, where a metadata request would wait
#: out its whole time-out and then say only "Broker transport failure").
AUTHENTICATION_ERRORS = frozenset({"_AUTHENTICATION", "_SSL", "SASL_AUTHENTICATION_FAILED"})
#: …and a TLS alert the broker sends back (a client certificate missing or not trusted) comes as a transport error
#: that carries OpenSSL's text (measured: ``_TRANSPORT``, "Receive failed: error:0A000412:SSL routines::ssl/tls alert
#: bad certificate: SSL alert number 42").
_TLS_ALERT = re.compile(r"SSL routines::|ssl/tls alert", re.IGNORECASE)

log = logging.getLogger("driftline.kafka.topics")

_T = TypeVar("_T")

_MODEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def prediction_topic(model: str, prefix: str = PREDICTION_TOPIC_PREFIX) -> str:
    """The topic of a model's prediction events; ``prefix`` namespaces an environment (``staging.predictions.``).

    >>> prediction_topic("credit_risk")
    'predictions.credit_risk'
    """
    if not _MODEL_NAME.match(model):
        raise ValueError(f"model: {model!r} is not a valid model name (an Avro record name)")
    return prefix + model


def label_topic(model: str, prefix: str = LABEL_TOPIC_PREFIX) -> str:
    """The topic of a model's ground-truth labels.

    >>> label_topic("credit_risk")
    'labels.credit_risk'
    """
    return prediction_topic(model, prefix)  # the same rule for the name


def partials_topic(consumer_group: str) -> str:
    """The default topic where a consumer group's partitions of split models send their window partials.

    One per group: a replay in another group never meets the live group's partials.

    >>> partials_topic("driftline")
    'driftline.window-partials'
    """
    return f"{consumer_group}.window-partials"


def ensure_topics(
    kafka: KafkaConnection,
    names: Sequence[str],
    timeout: float,
    *,
    answer_timeout: float | None = None,
    partitions: Mapping[str, int] | None = None,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, int]:
    """Create the missing topics; return every topic's partition count.

    A missing topic gets ``partitions[name]`` partitions (default one) and the topic settings
    ``configs[name]`` (default none).

    A topic created here is returned once its partitions have a leader (creation is asynchronous)
    and that leader answers an offset request (see :func:`end_offsets`), so no message and no offset
    request meets a partition the broker does not serve yet; one that another client created
    meanwhile counts as created. ``answer_timeout`` (default ``timeout``) bounds the first request;
    ``timeout`` bounds the creation, and then the wait for the new topics to be ready.

    Raises
    ------
    KafkaAuthenticationError
        The broker refused the connection's credentials, or the TLS handshake failed (at once, not
        after ``answer_timeout``).
    KafkaUnavailableError
        Kafka did not answer within ``answer_timeout``.
    TopicSetupError
        Kafka refused to create a topic, or a new topic's partition was not ready within ``timeout``
        (the message names the topic and the last Kafka error).
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    errors: list[KafkaError] = []
    # Its errors go to error_cb, and from there into the exception that says why the first answer did not come:
    # librdkafka's log lines would only repeat them (three times for a refused password).
    config: dict[str, Any] = {**kafka.client_config(), "logger": CLIENT_LOGGER, "error_cb": errors.append, "log_level": 2}
    admin = AdminClient(config)
    metadata = _first_answer(admin, kafka, timeout if answer_timeout is None else answer_timeout, errors)
    wanted = dict(partitions or {})
    settings = dict(configs or {})
    partitions = {name: len(metadata.topics[name].partitions) for name in names if name in metadata.topics}
    missing = [name for name in names if name not in partitions]
    if not missing:
        return partitions
    new_topics = [NewTopic(name, num_partitions=wanted.get(name, 1), config=dict(settings.get(name, {}))) for name in missing]
    for name, future in admin.create_topics(new_topics).items():
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
    # A leader named in the metadata may not serve the partition yet (NOT_LEADER_FOR_PARTITION): a
    # new topic is ready once each partition's leader answers an offset request.
    _wait_for_end_offsets(kafka, [(name, index) for name in missing for index in range(partitions[name])], deadline, timeout)
    return partitions


def _first_answer(admin: AdminClient, kafka: KafkaConnection, timeout: float, errors: list[KafkaError]) -> ClusterMetadata:
    """The cluster's metadata, asked for in slices of at most a second until ``timeout``; between two,
    the client's errors are read (``errors``, filled by its ``error_cb``), so that refused credentials
    or a failed TLS handshake end the wait at once, with librdkafka's reason."""
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + timeout
    while True:
        try:
            return admin.list_topics(timeout=min(max(deadline - time.monotonic(), _MIN_ATTEMPT_TIMEOUT), 1.0))
        except KafkaException as exc:
            admin.poll(0)  # serves error_cb
            refused = next((error for error in errors if _refused(error)), None)
            if refused is not None:
                raise KafkaAuthenticationError(authentication_failure(kafka, refused)) from None
            if time.monotonic() >= deadline:
                reason = next((error.str() for error in reversed(errors) if error.name() != "_ALL_BROKERS_DOWN"), None)
                raise KafkaUnavailableError(f"Kafka at {kafka.describe()} does not answer: {exc}"
                                            + (f" (last error: {_librdkafka_reason(reason)})" if reason else "")) from exc


def _refused(error: KafkaError) -> bool:
    """Whether ``error`` says the broker refused the credentials, or TLS failed: no retry mends it."""
    return error.name() in AUTHENTICATION_ERRORS or (error.name() == "_TRANSPORT" and _TLS_ALERT.search(error.str()) is not None)


def _librdkafka_reason(text: str) -> str:
    """librdkafka's error text without the broker's name in front and the state it was in after it.

    >>> _librdkafka_reason("sasl_ssl://b:9093/bootstrap: SASL authentication error: bad (after 31ms in state AUTH_REQ)")
    'SASL authentication error: bad'
    >>> _librdkafka_reason("127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 0ms in state CONNECT)")
    'Connect to ipv4#127.0.0.1:1 failed: Connection refused'
    """
    text = re.sub(r"^(\w+://)?[^\s/]+/\w+: ", "", text.strip())
    return re.sub(r"\s*\(after \d+ms in state \w+(, \d+ identical error\(s\) suppressed)?\)$", "", text)


def authentication_failure(kafka: KafkaConnection, error: KafkaError) -> str:
    """One line that says what the broker refused (or what TLS could not verify), and with which settings."""
    reason = _librdkafka_reason(error.str())
    if error.name() != "_AUTHENTICATION" and error.name() != "SASL_AUTHENTICATION_FAILED":
        if re.search(r"alert (bad certificate|certificate required|unknown ca)", reason, re.IGNORECASE):
            reason += " (the broker wants a client certificate that its CA signed)"
        return f"TLS with Kafka at {kafka.describe()} failed: {reason}"
    return f"Kafka at {kafka.describe()} refused the connection: {reason}"


def topic_partitions(kafka: KafkaConnection, topic: str, timeout: float = 15.0) -> list[int]:
    """The partition numbers of an existing ``topic``, from the brokers' metadata.

    Raises
    ------
    TopicSetupError
        The brokers did not answer, or the topic does not exist or reports an error.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    config: dict[str, Any] = {**kafka.client_config(), "logger": CLIENT_LOGGER}
    try:
        metadata = AdminClient(config).list_topics(topic=topic, timeout=timeout)
    except KafkaException as exc:
        raise TopicSetupError(f"could not read the metadata of {topic}: {exc}") from exc
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        reason = "it does not exist" if found is None or not found.partitions else str(found.error)
        raise TopicSetupError(f"{topic}: {reason}")
    return sorted(found.partitions)


def end_offsets(
    kafka: KafkaConnection, partitions: Iterable[tuple[str, int]], timeout: float, *, group_id: str = "driftline.probe"
) -> dict[tuple[str, int], int]:
    """The end offset (high watermark) of each ``(topic, partition)``, once its leader answers.

    A partition that was just created, or whose leader just changed, may refuse an offset request
    for a moment although the metadata names its leader: the errors of
    :data:`TRANSIENT_OFFSET_ERRORS` are retried, with pauses from 50 ms growing to 1 s, until
    ``timeout`` seconds have passed. ``group_id`` only names the probing client: it joins no group
    and commits nothing.

    Raises
    ------
    TopicSetupError
        A partition's leader did not answer within ``timeout``, or an offset request failed with an
        error that is not transient; the message names the topic and the last Kafka error.
    """
    return _wait_for_end_offsets(kafka, partitions, time.monotonic() + timeout, timeout, group_id=group_id)


def _wait_for_end_offsets(
    kafka: KafkaConnection, partitions: Iterable[tuple[str, int]], deadline: float, timeout: float, *, group_id: str = "driftline.probe"
) -> dict[tuple[str, int], int]:
    """:func:`end_offsets` until the ``time.monotonic()`` ``deadline``; ``timeout`` is the wait that errors name."""
    from confluent_kafka import Consumer, TopicPartition

    wanted = list(partitions)
    if not wanted:
        return {}
    consumer = Consumer({**kafka.client_config(), "group.id": group_id, "enable.auto.commit": False, "logger": CLIENT_LOGGER})
    try:
        return {
            (topic, index): retry_offset_request(
                partial(_high_watermark, consumer, TopicPartition(topic, index)), f"topic {topic} partition {index}", deadline, timeout
            )
            for topic, index in wanted
        }
    finally:
        consumer.close()


def _high_watermark(consumer: Consumer, partition: TopicPartition, timeout: float) -> int:
    return consumer.get_watermark_offsets(partition, timeout=timeout)[1]


def retry_offset_request(request: Callable[[float], _T], what: str, deadline: float, timeout: float) -> _T:
    """``request(attempt_timeout)``, tried again after a transient Kafka error until the ``time.monotonic()`` ``deadline``.

    ``what`` (``"topic t partition 0"``) and ``timeout`` (the whole wait, in seconds) word the error.
    Every try but the last waits ``_RETRY_INTERVAL`` doubled per failure (at most
    ``_RETRY_MAX_INTERVAL``); each is given the time left, between ``_MIN_ATTEMPT_TIMEOUT`` and
    ``_ATTEMPT_TIMEOUT``, so the whole call ends at most ``_MIN_ATTEMPT_TIMEOUT`` after ``deadline``.

    Raises
    ------
    TopicSetupError
        The request failed with an error outside :data:`TRANSIENT_OFFSET_ERRORS` (at once), or still
        failed at the deadline; the message names ``what`` and the last Kafka error.
    """
    from confluent_kafka import KafkaException

    interval = _RETRY_INTERVAL
    tries = 0
    while True:
        tries += 1
        left = deadline - time.monotonic()
        try:
            return request(min(max(left, _MIN_ATTEMPT_TIMEOUT), _ATTEMPT_TIMEOUT))
        except KafkaException as exc:
            error = exc.args[0]
            reason = f"{error.name()}: {error.str()}"
            if error.name() not in TRANSIENT_OFFSET_ERRORS:
                raise TopicSetupError(f"{what}: the offset request failed ({reason})") from exc
            left = deadline - time.monotonic()
            if left <= 0:
                raise TopicSetupError(
                    f"{what}: its leader did not answer an offset request within {timeout:g} s (tries: {tries}; last error {reason})"
                ) from exc
            log.debug("%s: %s; trying again in %.0f ms", what, reason, 1000 * min(interval, left))
            time.sleep(min(interval, left))
            interval = min(2 * interval, _RETRY_MAX_INTERVAL)
