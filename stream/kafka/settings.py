"""Typed settings of ``driftline worker``, built once at start-up (from the command line) and passed in."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from driftline.stream.monitor.engine import EngineConfig

from .connection import KafkaConnection
from .registry import SchemaRegistrySettings
from .topics import (
    ALERTS_TOPIC,
    DEADLETTER_TOPIC,
    FEATURE_TOPIC_PREFIX,
    LABEL_TOPIC_PREFIX,
    PREDICTION_TOPIC_PREFIX,
    label_topic,
    partials_topic,
    prediction_topic,
)

__all__ = ["WorkerSettings"]


@dataclass(frozen=True)
class WorkerSettings:
    """Everything ``driftline worker`` needs.

    Attributes
    ----------
    kafka
        The brokers and the connection's security (TLS, SASL): every Kafka client of the worker —
        readers, producers, admin clients and the Faust app — is built from it.
    database_url
        SQLAlchemy URL of the PostgreSQL database (migrated with ``driftline db upgrade``).
    models
        The models to monitor; each one's events are read from its own topic (``topic_prefix``).
    feature_sets, feature_topic_prefix
        Feature sets to monitor (contracts of kind ``feature_set``): each one's rows are read from
        ``<feature_topic_prefix><name>`` and monitored like a model's inputs.
    consumer_group
        Kafka consumer group, and the key of the checkpoints in the database.
    metrics_port, metrics_address
        Where ``/metrics`` is served (``None``: not served).
    health_port, health_address
        Where the Faust web server answers ``/healthz`` and ``/readyz`` (``None``: no web server).
    database_outage_seconds
        How long checkpoints may fail (database or dead-letter topic unreachable) before the worker
        gives up; meanwhile consumption is paused and the checkpoint retried.
    batch_max_events, batch_within_seconds
        A batch goes to the engine when it holds ``batch_max_events`` events or
        ``batch_within_seconds`` after its first event arrived, whichever comes first.
    checkpoint_interval_seconds
        How often processed events are made durable (results, engine state and offsets in one
        transaction); only then are their offsets committed to Kafka.
    snapshot_interval_seconds, snapshot_retention_seconds
        A copy of each partition's checkpoint is kept at its first checkpoint and then about this
        often (``None``: never), each for ``snapshot_retention_seconds``: ``driftline replay --run
        live`` starts from one.
    topic_prefix
        A model's events are read from ``<topic_prefix><model>``.
    label_topic_prefix
        With a label horizon (``engine.label_horizon_ms``), a model's labels are read from
        ``<label_topic_prefix><model>``, which must have as many partitions as its prediction topic.
    deadletter_topic
        Where rejected messages go.
    alerts_topic
        Where the incidents' state changes are published (Avro, ``schemas/alert.avsc``, keyed by alert
        id; the worker creates it); ``""``: not published.
    webhook_url, webhook_dead_letter
        Where the state changes are also POSTed as JSON (``None``: nowhere), with retries; where the
        deliveries that failed every attempt are appended (:mod:`~driftline.stream.kafka.webhook`).
    partials_topic, partials_partitions
        Where the partitions of a model split over several send their window partials to the merge
        stage (default ``<consumer_group>.window-partials``), and how many partitions the worker gives
        that topic when it creates it (the merge stage's work spreads over the workers by them, one
        model to one partition).
    idle_partition_seconds
        A partition of a split model that received nothing for this long closes its open windows
        and tells the merge stage not to wait for it (its later events of those windows are late).
    max_message_bytes
        Larger messages are rejected as ``oversized``.
    session_timeout_seconds
        How long the group coordinator waits for a silent consumer before giving its partitions to
        another: a crashed worker's replacement starts consuming only after this.
    stop_at_end
        Exit (cleanly) once every model topic has been processed up to the end offsets it had
        when the worker started — for backfills, tests and benchmarks.
    latency_record
        If set, the produce-to-commit latency of every message (milliseconds, Kafka timestamp to
        checkpoint commit) is written there as a NumPy ``.npy`` file at exit.
    schemas_dir, profiles_dir
        Contract directory (default: the bundled contracts) and an optional directory of reference
        profiles written by ``driftline baseline``; without it the profiles come from the database.
    data_dir
        driftline's data directory; the worker keeps its Faust state under ``<data_dir>/worker``
        (``None``: in a temporary directory — the worker keeps no state there that must survive it).
    engine
        The engine's tunables.
    schema_registry
        The Schema Registry that Confluent-framed events' schema ids are resolved in (``None``: such
        events are rejected as ``unknown_schema_id``).
    """

    kafka: KafkaConnection
    database_url: str = field(repr=False)
    models: tuple[str, ...]
    feature_sets: tuple[str, ...] = ()
    feature_topic_prefix: str = FEATURE_TOPIC_PREFIX
    consumer_group: str = "driftline"
    metrics_port: int | None = 9464
    metrics_address: str = "127.0.0.1"
    health_port: int | None = None
    health_address: str = "127.0.0.1"
    database_outage_seconds: float = 300.0
    # 50,000: the worker ran at 130k events/s against 101k with 10,000 (end_to_end.py, 1M events, one
    # run each on this 2-core machine); latency does not suffer: a slow stream's batch is cut by time.
    batch_max_events: int = 50_000
    batch_within_seconds: float = 0.25
    checkpoint_interval_seconds: float = 1.0
    snapshot_interval_seconds: float | None = 3_600.0
    snapshot_retention_seconds: float = 7 * 86_400.0
    topic_prefix: str = PREDICTION_TOPIC_PREFIX
    label_topic_prefix: str = LABEL_TOPIC_PREFIX
    deadletter_topic: str = DEADLETTER_TOPIC
    alerts_topic: str = ALERTS_TOPIC
    webhook_url: str | None = None
    webhook_dead_letter: Path = Path("driftline-webhook-dead-letters.jsonl")
    partials_topic: str = ""  # "": the group's own, <consumer_group>.window-partials
    partials_partitions: int = 4
    idle_partition_seconds: float = 30.0
    max_message_bytes: int = 1_000_000
    session_timeout_seconds: float = 10.0
    stop_at_end: bool = False
    latency_record: Path | None = None
    schemas_dir: Path | None = None
    profiles_dir: Path | None = None
    data_dir: Path | None = None
    engine: EngineConfig = field(default_factory=EngineConfig)
    schema_registry: SchemaRegistrySettings | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kafka, KafkaConnection):
            raise ValueError(f"kafka must be a KafkaConnection, not {type(self.kafka).__name__}")
        if not self.models and not self.feature_sets:
            raise ValueError("models must name at least one model (or feature_sets one feature set)")
        for model in self.monitored:
            prediction_topic(model, self.topic_prefix)  # validates the name
        if len(set(self.monitored)) != len(self.monitored):
            raise ValueError(f"models, feature_sets: a name is given twice in {list(self.monitored)}")
        if len(set(self.topics.values())) != len(self.topics):
            raise ValueError("topic_prefix and feature_topic_prefix give a model and a feature set the same topic")
        if self.batch_max_events < 1:
            raise ValueError(f"batch_max_events must be at least 1, got {self.batch_max_events}")
        if not self.batch_within_seconds > 0:
            raise ValueError(f"batch_within_seconds must be > 0, got {self.batch_within_seconds}")
        if not self.checkpoint_interval_seconds > 0:
            raise ValueError(f"checkpoint_interval_seconds must be > 0, got {self.checkpoint_interval_seconds}")
        if self.snapshot_interval_seconds is not None and not self.snapshot_interval_seconds > 0:
            raise ValueError(f"snapshot_interval_seconds must be > 0 (or None: no snapshots), got {self.snapshot_interval_seconds}")
        if not self.snapshot_retention_seconds > 0:
            raise ValueError(f"snapshot_retention_seconds must be > 0, got {self.snapshot_retention_seconds}")
        if not 6.0 <= self.session_timeout_seconds <= 300.0:  # the broker's default group.min/max.session.timeout.ms
            raise ValueError(f"session_timeout_seconds must be within [6, 300], got {self.session_timeout_seconds}")
        if not self.database_outage_seconds > 0:
            raise ValueError(f"database_outage_seconds must be > 0, got {self.database_outage_seconds}")
        if self.health_port is not None and not 1 <= self.health_port <= 65535:
            raise ValueError(f"health_port must be a port number (1 to 65535), got {self.health_port}")
        if not self.partials_topic:
            object.__setattr__(self, "partials_topic", partials_topic(self.consumer_group))
        if self.partials_partitions < 1:
            raise ValueError(f"partials_partitions must be at least 1, got {self.partials_partitions}")
        if not self.idle_partition_seconds > 0:
            raise ValueError(f"idle_partition_seconds must be > 0, got {self.idle_partition_seconds}")
        if self.partials_topic in self.topics.values() or self.partials_topic == self.deadletter_topic:
            raise ValueError(f"partials_topic {self.partials_topic!r} is also a model or the dead-letter topic")
        if self.max_message_bytes < 1:
            raise ValueError(f"max_message_bytes must be at least 1, got {self.max_message_bytes}")
        if self.alerts_topic and self.alerts_topic in {*self.topics.values(), self.deadletter_topic, self.partials_topic}:
            raise ValueError(f"alerts_topic {self.alerts_topic!r} is also a model, the dead-letter or the partials topic")
        others = {*self.topics.values(), self.deadletter_topic, self.partials_topic, *([self.alerts_topic] if self.alerts_topic else [])}
        clash = sorted(others & set(self.label_topics.values()))
        if clash:
            raise ValueError(f"label_topic_prefix {self.label_topic_prefix!r} names label topics that are also other topics: {clash}")

    @property
    def monitored(self) -> tuple[str, ...]:
        """The models, then the feature sets: every name whose topic the worker reads."""
        return (*self.models, *self.feature_sets)

    @property
    def topics(self) -> dict[str, str]:
        """Topic of each model and feature set."""
        return {
            **{model: prediction_topic(model, self.topic_prefix) for model in self.models},
            **{name: prediction_topic(name, self.feature_topic_prefix) for name in self.feature_sets},
        }

    def stream_of(self, name: str) -> str:
        """``"features"`` for a feature set, ``"predictions"`` for a model (the metrics' ``stream`` label)."""
        return "features" if name in self.feature_sets else "predictions"

    @property
    def label_topics(self) -> dict[str, str]:
        """Label topic of each model; none without a label horizon (the worker then reads no labels)."""
        if self.engine.label_horizon_ms is None:
            return {}
        return {model: label_topic(model, self.label_topic_prefix) for model in self.models}

    @property
    def redacted_database_url(self) -> str:
        from driftline.sinks.database import display_url  # SQLAlchemy only when the worker runs

        return display_url(self.database_url)
