"""``driftline demo``: the whole engine in-process on a synthetic stream with four known episodes.

1. a gradual mean shift of ``annual_income`` (up to +1 standard deviation),
2. a producer schema change: ``debt_to_income`` renamed ``dti_ratio`` (events rejected, one
   schema-change alert),
3. a new value, ``partner_api``, flooding the open categorical ``channel``,
4. a concept change: the inputs stay as they were, but the outcome follows the score less (labels
   arrive on their own topic five minutes of event time after their predictions, and are joined).

Events are Avro-encoded with Confluent framing against confluent-kafka's in-memory Schema Registry
client (``mock://`` — the library's own implementation, so no server is needed), decoded by the
same codec the Kafka worker uses, monitored, and written to SQLite with the tables Postgres uses.
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from prometheus_client import CollectorRegistry
from tqdm import tqdm

from driftline.schemas.codec import Codec, encode_confluent, in_memory_registry
from driftline.schemas.contract import Contract
from driftline.schemas.contract_catalog import Catalog
from driftline.stream.monitor.engine import EngineConfig
from driftline.stream.monitor.profile import ReferenceProfile, build_reference_profile
from driftline.stream.monitor.results import Alert, BatchResult, FeatureWindow, ModelWindow, PerformanceWindow, describe_alert
from driftline.stream.runner import EncodedMessage, InMemoryDeadLetters, MetricsPort, PartitionKey, PartitionRunner

from .generator import Episode, SyntheticStream

__all__ = ["DemoSummary", "DemoTotals", "build_demo_runner", "demo_episodes", "demo_messages", "run_demo"]

MODEL = "credit_risk"
MODEL_VERSION = "v1"
SUBJECT = "predictions.credit_risk-value"
LABEL_SUBJECT = "labels.credit_risk-value"
#: Labels are published this long (event time) after their predictions, a batch later.
LABEL_DELAY_MS = 5 * 60_000
#: The demo joins labels up to an hour after their predictions.
LABEL_HORIZON_MS = 3_600_000
BATCH_SIZE = 2_000
#: The demo's consumer group: the key of its checkpoint in the SQLite database.
DEMO_GROUP = "demo"
#: Checkpoint (commit results and engine state) after this many batches, as a worker does about once a second.
CHECKPOINT_EVERY_BATCHES = 20


def demo_episodes(events: int) -> list[Episode]:
    """The four episodes, placed at fixed fractions of the stream."""

    def at(fraction: float) -> int:
        return int(events * fraction)

    return [
        Episode("mean_shift", at(0.20), at(0.36), "annual_income", size=1.0),
        Episode("rename", at(0.50), at(0.58), "debt_to_income", new_name="dti_ratio"),
        Episode("new_category", at(0.72), at(0.82), "channel", size=0.3, new_name="partner_api"),
        Episode("concept", at(0.88), at(0.98), "prediction_score", size=0.8),
    ]


@dataclass
class DemoTotals:
    """Counts over a whole demo run; ``consumed == accepted + rejected``."""

    consumed: int = 0
    accepted: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    late_events: int = 0
    seconds: float = 0.0

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_reason.values())


@dataclass
class DemoSummary:
    """What a demo run produced (also written to ``summary.json``)."""

    totals: DemoTotals
    episodes: list[Episode]
    alerts: list[Alert]
    feature_windows: list[FeatureWindow] = field(default_factory=list)
    model_windows: list[ModelWindow] = field(default_factory=list)
    performance_windows: list[PerformanceWindow] = field(default_factory=list)
    label_counts: dict[str, int] = field(default_factory=dict)
    database: Path | None = None
    report: Path | None = None
    metrics_port: int | None = None

    @property
    def ok(self) -> bool:
        return self.totals.consumed == self.totals.accepted + self.totals.rejected


def renamed_schema(contract: Contract, old: str, new: str) -> dict[str, object]:
    """The contract's Avro schema with one field renamed — what a careless producer ships."""
    schema: dict[str, Any] = json.loads(json.dumps(contract.schema_json))
    for avro_field in schema["fields"]:
        if avro_field["name"] == old:
            avro_field["name"] = new
    return schema


def demo_messages(
    contract: Contract, stream: SyntheticStream, events: int, episodes: list[Episode], registry: object
) -> Iterator[list[EncodedMessage]]:
    """Encoded batches of the demo stream, offsets from 0; the producer switches schema during the rename episode.

    Events are Avro with Confluent framing (``registry`` resolves their schema ids); each message's
    timestamp is the wall-clock time it was made, as a broker would stamp it.
    """
    from confluent_kafka.schema_registry import Schema

    original = contract.schema_json
    rename = next(e for e in episodes if e.kind == "rename")
    changed = renamed_schema(contract, rename.feature, rename.new_name)
    original_id = registry.register_schema(SUBJECT, Schema(json.dumps(original), "AVRO"))  # type: ignore[attr-defined]
    changed_id = registry.register_schema(SUBJECT, Schema(json.dumps(changed), "AVRO"))  # type: ignore[attr-defined]
    for offset in range(0, events, BATCH_SIZE):
        n = min(BATCH_SIZE, events - offset)
        columns = stream.columns(n, offset=offset)
        stream.apply_episodes(columns, episodes, offset=offset)
        records = stream.records(columns, demo_event_times(stream, n, offset), offset=offset, model_version=MODEL_VERSION)
        stamp_ms = int(time.time() * 1000)
        messages = []
        for i, record in enumerate(records):
            if rename.start <= offset + i < rename.end:
                record[rename.new_name] = record.pop(rename.feature)
                payload = encode_confluent(record, changed, changed_id)
            else:
                payload = encode_confluent(record, original, original_id)
            messages.append(EncodedMessage(offset + i, payload, stamp_ms))
        yield messages


def demo_labels(
    contract: Contract, stream: SyntheticStream, events: int, episodes: list[Episode], registry: object
) -> Iterator[list[EncodedMessage]]:
    """Encoded label batches for the demo stream, one per prediction batch, offsets from 0 (Confluent framing).

    Every prediction gets its outcome (:meth:`SyntheticStream.labels`, with the concept episode),
    observed :data:`LABEL_DELAY_MS` after the prediction's event time.
    """
    from confluent_kafka.schema_registry import Schema

    from driftline.schemas.labels import LABEL_RECORD

    schema = Catalog.load().event_schema(LABEL_RECORD)
    schema_id = registry.register_schema(LABEL_SUBJECT, Schema(json.dumps(schema), "AVRO"))  # type: ignore[attr-defined]
    for offset in range(0, events, BATCH_SIZE):
        n = min(BATCH_SIZE, events - offset)
        columns = stream.columns(n, offset=offset)
        stream.apply_episodes(columns, episodes, offset=offset)
        outcome = stream.labels(columns, episodes, offset=offset)
        times = demo_event_times(stream, n, offset)
        stamp_ms = int(time.time() * 1000)
        yield [
            EncodedMessage(offset + i, encode_confluent({
                "event_id": f"evt-{offset + i:09d}", "model_name": contract.model, "label": float(outcome[i]),
                "label_time": int(times[i]) + LABEL_DELAY_MS,
            }, schema, schema_id), stamp_ms)
            for i in range(n)
        ]


LATE_EVERY = 997  # every 997th event arrives ten minutes late: beyond the allowed lateness
LATE_BY_MS = 10 * 60_000


def demo_event_times(stream: SyntheticStream, n: int, offset: int) -> np.ndarray:
    """Event times of the demo stream, with a trickle of events delayed beyond the allowed lateness."""
    times = stream.event_times(n, offset=offset)
    position = np.arange(offset, offset + n)
    late = (position % LATE_EVERY == 0) & (position >= 10 * LATE_EVERY)
    times[late] -= LATE_BY_MS
    return times


def reference_profile(contract: Contract, stream: SyntheticStream, rows: int = 50_000) -> ReferenceProfile:
    """The demo model's training data: clean, labelled rows from the same generator, another seed."""
    columns = stream.columns(rows, seed_offset=1)
    return build_reference_profile(
        contract,
        columns,
        model_version=MODEL_VERSION,
        event_times_ms=stream.event_times(rows),
        source="synthetic training data",
        labels=stream.labels(columns, seed_offset=1),
    )


def build_demo_runner(
    *,
    contract: Contract,
    profiles: dict[str, ReferenceProfile],
    codec: Codec,
    database: Path,
    config: EngineConfig | None = None,
    metrics: MetricsPort | None = None,
    on_result: Callable[[BatchResult], None] | None = None,
) -> tuple[PartitionRunner, InMemoryDeadLetters]:
    """The demo's partition runner: dead letters kept in memory, results and checkpoints in SQLite at ``database``.

    The database must exist with driftline's tables (``upgrade_database``).
    """
    from driftline.sinks import SqlCheckpointStore, create_database_engine

    deadletters = InMemoryDeadLetters()
    runner = PartitionRunner(
        key=PartitionKey(DEMO_GROUP, f"predictions.{contract.model}", 0),
        contract=contract,
        profiles=profiles,
        codec=codec,
        store=SqlCheckpointStore(create_database_engine(f"sqlite:///{database}")),
        deadletters=deadletters,
        config=config,
        metrics=metrics,
        on_result=on_result,
    )
    return runner, deadletters


def run_demo(
    *,
    output: Path,
    events: int = 200_000,
    seed: int = 7,
    metrics_port: int | None = 9464,
    progress: bool = True,
    echo: bool = True,
    false_alarms_per_month: float = 1.0,
) -> DemoSummary:
    """Run the demo; return its summary (alerts, windows, where the database and report are).

    ``metrics_port``: where Prometheus metrics are served while it runs (0: any free port, None: not served).
    ``false_alarms_per_month``: the model's false-alarm budget (see :mod:`driftline.stream.monitor.budget`).
    """
    from driftline.sinks import DriftlineMetrics, SqlProfileStore, create_database_engine, serve, upgrade_database

    from .report import write_report

    if events < 10_000:
        raise ValueError(f"events must be >= 10000 for the episodes to fit, got {events}")
    output.mkdir(parents=True, exist_ok=True)
    out: TextIO = sys.stdout if echo else io.StringIO()
    catalog = Catalog.load()
    contract = catalog.contract(MODEL)
    stream = SyntheticStream(contract, seed=seed)
    episodes = demo_episodes(events)

    print(f"driftline demo: calibrating detectors on 50,000 reference rows of {MODEL} {MODEL_VERSION} …", file=out)
    profile = reference_profile(contract, stream)
    (output / "reference_profile.json").write_text(profile.to_json(), encoding="utf-8")

    database = output / "driftline.sqlite"
    database.unlink(missing_ok=True)
    database_url = f"sqlite:///{database}"
    upgrade_database(database_url)
    profile_engine = create_database_engine(database_url)
    SqlProfileStore(profile_engine).save(MODEL, MODEL_VERSION, profile.to_json())
    profile_engine.dispose()

    registry_metrics = CollectorRegistry()
    metrics = DriftlineMetrics(
        registry_metrics,
        models={MODEL: [f.name for f in contract.fields]},
    )
    port: int | None = None
    if metrics_port is not None:
        try:
            port = serve(registry_metrics, metrics_port)
        except OSError as exc:
            # A second demo, or another exporter, holds the port: the demo is still worth running.
            port = serve(registry_metrics, 0)
            print(f"port {metrics_port} is taken ({exc.strerror}); serving metrics on {port} instead", file=out)
    if port is not None:
        print(f"Prometheus metrics at http://127.0.0.1:{port}/metrics while the demo runs", file=out)

    registry = in_memory_registry()
    codec = Codec(catalog, registry_client=registry)
    collected = BatchResult()
    bar = tqdm(total=events, unit="ev", disable=not progress, file=sys.stderr, dynamic_ncols=True)

    def on_result(result: BatchResult) -> None:
        collected.extend(result)
        for alert in result.alerts:
            bar.write(describe_alert(alert), file=out)

    runner, _ = build_demo_runner(
        contract=contract,
        profiles={profile.model_version: profile},
        codec=codec,
        database=database,
        config=EngineConfig(false_alarms_per_month=false_alarms_per_month, label_horizon_ms=LABEL_HORIZON_MS),
        metrics=metrics,
        on_result=on_result,
    )
    started = time.perf_counter()
    labels = demo_labels(contract, stream, events, episodes, registry)
    waiting: list[EncodedMessage] = []  # a batch's labels are published with the next batch
    for batch, messages in enumerate(demo_messages(contract, stream, events, episodes, registry), start=1):
        runner.process(messages)
        if waiting:
            runner.process_labels(waiting)
        waiting = next(labels)
        if batch % CHECKPOINT_EVERY_BATCHES == 0:
            runner.checkpoint()
        bar.update(len(messages))
    if waiting:
        runner.process_labels(waiting)
    runner.finish()
    bar.close()
    totals = DemoTotals(
        consumed=runner.counts.consumed,
        accepted=runner.counts.accepted,
        rejected_by_reason=dict(collected.rejected_by_reason),
        late_events=collected.late_events,
        seconds=time.perf_counter() - started,
    )

    summary = DemoSummary(        totals=totals,
        episodes=episodes,
        alerts=collected.alerts,
        feature_windows=collected.feature_windows,
        model_windows=collected.model_windows,
        performance_windows=collected.performance_windows,
        label_counts=dict(collected.label_counts),
        database=database,
        metrics_port=port,
    )
    facts = {
        "events consumed": totals.consumed,
        "accepted": totals.accepted,
        "rejected (dead-lettered)": totals.rejected,
        "rejected by reason": dict(sorted(totals.rejected_by_reason.items())),
        "late beyond lateness (counted)": totals.late_events,
        "labels joined": collected.label_counts.get("joined", 0),
        "labels not joined, by reason": {k: v for k, v in sorted(collected.label_counts.items())
                                         if k in ("duplicate", "after_horizon", "before_prediction", "unknown_prediction", "evicted")
                                         or k.startswith("rejected_")},
        "alerts": len(collected.alerts),
        "windows": len(collected.model_windows),
        "seconds (encode, decode, monitor, SQLite)": round(totals.seconds, 2),
        "episodes": [f"{e.kind} of {e.feature} at events {e.start}-{e.end}" for e in episodes],
    }
    summary.report = write_report(
        output / "report.html",
        title=f"driftline demo — {MODEL} {MODEL_VERSION}",
        feature_windows=collected.feature_windows,
        alerts=collected.alerts,
        model_windows=collected.model_windows,
        summary=facts,
        prediction_features=[f.name for f in contract.prediction_fields],
        performance_windows=collected.performance_windows,
        resolutions=collected.resolved_alerts,
    )
    (output / "summary.json").write_text(json.dumps(facts, indent=1, default=str), encoding="utf-8")
    print(
        f"\n{totals.consumed} events: {totals.accepted} accepted + {totals.rejected} rejected "
        f"({', '.join(f'{k}={v}' for k, v in sorted(totals.rejected_by_reason.items())) or 'none'}); "
        f"{totals.late_events} late; {len(collected.alerts)} alerts",
        file=out,
    )
    print(f"window aggregates and alerts: {database}", file=out)
    print(f"report: {summary.report}", file=out)
    return summary
