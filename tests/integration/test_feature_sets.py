"""A feature set's topic on the real broker and database: training/serving skew and a feature that stops arriving.

The example feature set ``credit_features`` (``schemas/credit_features.avsc``, a contract of kind
``feature_set``: features only) is monitored from ``<prefix>features.credit_features`` with
``driftline worker --feature-set``, against a profile of the training data. Its rows follow the
training data for five minutes; then the serving pipeline computes income 60 % too high (skew) and
stops filling ``employment_type`` (null in every row).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from worker_harness import Worker, checkpoint, isolated_database, produce, table, unique

from driftline.schemas.codec import encode_single_object
from driftline.schemas.contract_catalog import Catalog
from driftline.sinks import SqlProfileStore
from driftline.sinks.database import create_database_engine
from driftline.stream.demo.generator import SyntheticStream
from driftline.stream.monitor.profile import build_reference_profile

FEATURE_SET = "credit_features"
N = 12_000  # 20 rows/s: ten minutes
CHANGE = N // 2


def _rows() -> list[bytes]:
    catalog = Catalog.load()
    features = catalog.contract(FEATURE_SET)
    stream = SyntheticStream(catalog.contract("credit_risk"), seed=31, events_per_second=20)  # the same inputs the model is served
    columns, times = stream.columns(N), stream.event_times(N)
    records = stream.records(columns, times)
    names = [f.name for f in features.fields]
    payloads = []
    for index, record in enumerate(records):
        row = {name: record[name] for name in names} | {"model_name": FEATURE_SET}
        if index >= CHANGE:
            row["annual_income"] = float(row["annual_income"]) * 1.6
            row["employment_type"] = None
        payloads.append(encode_single_object(row, features.schema_json))
    return payloads


def _save_training_profile(url: str) -> None:
    catalog = Catalog.load()
    features = catalog.contract(FEATURE_SET)
    columns = SyntheticStream(catalog.contract("credit_risk"), seed=3).columns(30_000, seed_offset=1)
    profile = build_reference_profile(features, {f.name: columns[f.name] for f in features.monitored_fields}, model_version="v1",
                                      source="training data of the credit-risk features")
    engine = create_database_engine(url)
    try:
        SqlProfileStore(engine).save(FEATURE_SET, "v1", profile.to_json())
    finally:
        engine.dispose()


def test_skew_and_a_feature_that_stops_arriving_raise_alerts(kafka_bootstrap: str, database_url: str, tmp_path: Path) -> None:
    prefix = unique("fs") + "."
    topic = prefix + "features." + FEATURE_SET
    payloads = _rows()
    produce(kafka_bootstrap, topic, payloads)
    with isolated_database(database_url) as url:
        _save_training_profile(url)
        # Beside a model whose labels it joins: a feature set has no label topic, and nothing asks for one.
        worker = Worker(bootstrap=kafka_bootstrap, database_url=url, prefix=prefix, deadletter=prefix + "dlq", group="fs",
                        log=tmp_path / "worker.log", models=("credit_risk",), stop_at_end=True,
                        extra=("--feature-set", FEATURE_SET, "--feature-topic-prefix", prefix + "features.",
                               "--label-horizon", "1h", "--label-topic-prefix", prefix + "labels."))
        assert worker.wait(300) == 0, worker.log_tail()
        counts = checkpoint(url, "fs", topic)
        assert counts is not None and counts["consumed"] == counts["accepted"] == N  # a null employment_type is allowed (counted)
        alerts = table(url, "alerts", exclude=["created_at", "alert_id", "message", "resolved_at", "last_signal_at", "signals"])
        columns = ["model", "model_version", "kind", "feature", "detector", "severity", "window_start", "event_time", "score", "threshold",
                   "run"]
        found = [dict(zip(columns, row, strict=True)) for row in alerts]
        change_ms = int(np.asarray(SyntheticStream(Catalog.load().contract("credit_risk"), seed=31, events_per_second=20)
                                   .event_times(N))[CHANGE])
        assert found and all(alert["model"] == FEATURE_SET for alert in found)
        assert all(alert["event_time"].timestamp() * 1000 >= change_ms - 60_000 for alert in found), "an alert before the change"
        kinds = {(alert["kind"], alert["feature"]) for alert in found}
        print("feature-set alerts:", sorted(kinds))
        assert kinds & {("mean_shift", "annual_income"), ("distribution_drift", "annual_income")}, kinds  # the skew
        assert ("data_quality", "employment_type") in kinds, kinds  # the feature that stopped arriving
        windows = table(url, "window_aggregates", exclude=["updated_at"])
        assert windows, "no window of the feature set was written"
